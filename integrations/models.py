"""Webhooks: a site's URL that is told about its cases' events, and every delivery made to it."""

from django.conf import settings
from django.db import models

from cases.models import Case, Site
from cases.signals import CASE_EVENTS


def event_choices() -> list[tuple[str, str]]:
    return [(event, event) for event in CASE_EVENTS]


class Webhook(models.Model):
    """An endpoint of a hospital system or lab script, registered by an admin for one site."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=500)
    secret = models.CharField(
        max_length=128,
        help_text="Shared secret: each delivery carries X-Malaria-Signature, "
        "sha256=HMAC-SHA256(secret, timestamp + '.' + body).",
    )
    events = models.JSONField(
        default=list, help_text=f"Any of: {', '.join(CASE_EVENTS)}. Empty: all of them."
    )
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["site", "id"]

    def __str__(self) -> str:
        return f"{self.site.code}: {self.url}"

    def wants(self, event: str) -> bool:
        return not self.events or event in self.events


class WebhookDelivery(models.Model):
    """One event sent (or being sent) to one webhook, with the receiver's last answer."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="+")
    event = models.CharField(max_length=40)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)
    error = models.TextField(blank=True)
    replay_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="replays"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"{self.event} of case {self.case_id} to {self.webhook.url} ({self.status})"
