"""Sending one webhook delivery and recording the receiver's answer (worker side).

Each request carries the event, the delivery id, a timestamp and an HMAC-SHA256 signature over
"<timestamp>.<body>" with the webhook's secret, so a receiver can check who sent it and refuse
replays of old requests.
"""

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request

from django.utils import timezone

from integrations.models import WebhookDelivery

TIMEOUT_SECONDS = 10
RESPONSE_KEEP_CHARS = 2000
USER_AGENT = "malaria-platform-webhooks/1"


class DeliveryFailed(Exception):
    """The receiver did not answer 2xx; the task retries."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def delivery_attempt(*, delivery_id: int) -> WebhookDelivery:
    """Send a pending delivery once and record the answer. Raises DeliveryFailed on a non-2xx
    answer or a network error (the task retries); a delivered one is not sent again."""
    delivery = WebhookDelivery.objects.select_related("webhook").get(pk=delivery_id)
    if delivery.status != WebhookDelivery.Status.PENDING:
        return delivery
    body = json.dumps({**delivery.payload, "delivery": delivery.pk}, sort_keys=True).encode()
    timestamp = str(int(time.time()))
    request = urllib.request.Request(
        delivery.webhook.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Malaria-Event": delivery.event,
            "X-Malaria-Delivery": str(delivery.pk),
            "X-Malaria-Timestamp": timestamp,
            "X-Malaria-Signature": sign(delivery.webhook.secret, timestamp, body),
        },
    )
    status, text, error = None, "", ""
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as answer:  # noqa: S310
            status, text = answer.status, answer.read(RESPONSE_KEEP_CHARS).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read(RESPONSE_KEEP_CHARS).decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        error = str(getattr(exc, "reason", exc))[:RESPONSE_KEEP_CHARS]
    ok = status is not None and 200 <= status < 300
    now = timezone.now()
    WebhookDelivery.objects.filter(pk=delivery.pk, status=WebhookDelivery.Status.PENDING).update(
        attempts=delivery.attempts + 1,
        last_attempt_at=now,
        response_status=status,
        response_body=text,
        error=error,
        **({"status": WebhookDelivery.Status.DELIVERED, "delivered_at": now} if ok else {}),
    )
    delivery.refresh_from_db()
    if not ok:
        raise DeliveryFailed(error or f"the receiver answered {status}")
    return delivery


def delivery_mark_failed(*, delivery_id: int, reason: str) -> None:
    """After the last retry: the delivery stays failed until an admin replays it."""
    WebhookDelivery.objects.filter(pk=delivery_id, status=WebhookDelivery.Status.PENDING).update(
        status=WebhookDelivery.Status.FAILED, error=reason[:RESPONSE_KEEP_CHARS]
    )
