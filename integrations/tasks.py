"""Thin Celery task: send one webhook delivery; retries with exponential back-off live here."""

from celery import shared_task
from django.conf import settings

from integrations import delivery


@shared_task(
    bind=True,
    name="integrations.deliver_webhook",
    ignore_result=True,
    max_retries=None,  # bounded by WEBHOOK_MAX_ATTEMPTS below
    acks_late=True,
)
def deliver_webhook(self, delivery_id: int) -> None:
    try:
        delivery.delivery_attempt(delivery_id=delivery_id)
    except delivery.DeliveryFailed as exc:
        attempt = self.request.retries + 1
        if attempt >= settings.WEBHOOK_MAX_ATTEMPTS:
            delivery.delivery_mark_failed(delivery_id=delivery_id, reason=str(exc))
            return
        # 30 s, 60 s, 120 s, ... (WEBHOOK_RETRY_BASE_SECONDS doubled per attempt)
        delay = settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** (attempt - 1)
        raise self.retry(exc=exc, countdown=delay) from exc
