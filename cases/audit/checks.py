"""Deployment checks of the audit trail (`manage.py check --deploy`)."""

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def audit_key_is_set(app_configs=None, **kwargs) -> list[Warning]:
    """Without AUDIT_HMAC_KEY whoever can write the database can recompute a rewritten chain."""
    if settings.AUDIT_HMAC_KEY:
        return []
    return [
        Warning(
            "AUDIT_HMAC_KEY is not set: audit events are hashed without a key, so whoever can "
            "write the database can rewrite the trail and recompute its hashes.",
            hint="Set AUDIT_HMAC_KEY or AUDIT_HMAC_KEY_FILE to a long random secret kept "
            "outside the database, and never change it.",
            id="cases.W001",
        )
    ]
