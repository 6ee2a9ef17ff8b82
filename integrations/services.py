"""Writes of webhook deliveries: record them with the case event, send them, replay them.

A delivery is a row written in the transaction of the case's change (integrations.receivers)
and sent by a Celery task after the commit (integrations.tasks, which calls
integrations.delivery and retries with back-off).
"""

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from cases.models import Case
from integrations.models import Webhook, WebhookDelivery
from integrations.tasks import deliver_webhook


def _payload(case: Case, event: str) -> dict:
    return {
        "event": event,
        "occurred_at": timezone.now().isoformat(),
        "case": {
            "id": case.pk,
            "site": case.patient.site.code,
            "status": case.status,
            "final_diagnosis": case.final_diagnosis,
            "url": reverse("api-v1-case-detail", args=[case.pk]),
            "report_fhir_url": reverse("api-v1-case-report", args=[case.pk, "fhir"]),
        },
    }


def deliveries_record(*, case: Case, event: str) -> list[WebhookDelivery]:
    """One pending delivery per active webhook of the case's site that wants the event; sent
    after the surrounding transaction commits."""
    hooks = [
        hook
        for hook in Webhook.objects.filter(site_id=case.patient.site_id, is_active=True)
        if hook.wants(event)
    ]
    if not hooks:
        return []
    payload = _payload(case, event)
    rows = WebhookDelivery.objects.bulk_create(
        [WebhookDelivery(webhook=h, case=case, event=event, payload=payload) for h in hooks]
    )
    ids = [row.pk for row in rows]
    transaction.on_commit(lambda: _enqueue(ids))
    return rows


def _enqueue(ids: list[int]) -> None:
    for delivery_id in ids:
        deliver_webhook.delay(delivery_id)


@transaction.atomic
def delivery_replay(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery's payload again, as a new delivery (the old one keeps its history)."""
    replay = WebhookDelivery.objects.create(
        webhook=delivery.webhook,
        case=delivery.case,
        event=delivery.event,
        payload=delivery.payload,
        replay_of=delivery,
    )
    transaction.on_commit(lambda: _enqueue([replay.pk]))
    return replay
