"""Receives the case events (cases.signals) and records webhook deliveries for them."""

from django.dispatch import receiver

from cases.signals import case_event
from integrations.services import deliveries_record


@receiver(case_event, dispatch_uid="integrations.webhooks")
def _record_deliveries(sender, *, case, event: str, **kwargs) -> None:
    deliveries_record(case=case, event=event)
