"""Events of a case that other parts of the project may act on (webhooks: integrations/).

The services send them inside the transaction that makes the change, next to its audit event;
a receiver records its own work in that transaction and acts only after the commit
(transaction.on_commit), so a rolled-back change is never announced. cases imports nothing of
its receivers.
"""

from django.dispatch import Signal

# Sent with case=<Case>, event=<one of CASE_EVENTS>.
case_event = Signal()

CASE_ANALYSED = "case.analysed"  # every image analysed: the case awaits review
CASE_SIGNED_OFF = "case.signed_off"
CASE_REOPENED = "case.reopened"
CASE_EVENTS = (CASE_ANALYSED, CASE_SIGNED_OFF, CASE_REOPENED)


def case_event_send(*, case, event: str) -> None:
    """Announce `event` of `case`. Call inside the service's transaction."""
    if event not in CASE_EVENTS:
        raise ValueError(f"unknown case event {event!r}")
    case_event.send(sender=type(case), case=case, event=event)
