"""Refuse log-ins for a user name after repeated failures (password guessing).

The audit trail is the record: failures are its ``user.login_failed`` events, so the count is
shared by every web process and survives restarts without a cache. A name is locked once it has
``LOGIN_MAX_FAILURES`` failures within ``LOGIN_LOCKOUT_MINUTES`` and since its last successful
log-in; it unlocks when the oldest of those failures leaves the window. While locked, the
password is not checked and nothing more is written to the trail.
"""

from __future__ import annotations

import math
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from cases.models import AuditEvent


def _failures(username: str, window: timedelta) -> list:
    """Times of the name's failures in the window since its last successful log-in, newest first."""
    since = timezone.now() - window
    last_login = (
        AuditEvent.objects.filter(action="user.login", actor_name=username, created_at__gte=since)
        .order_by("-seq")
        .values_list("created_at", flat=True)
        .first()
    )
    failures = AuditEvent.objects.filter(
        action="user.login_failed", created_at__gte=last_login or since, after__username=username
    )
    return list(failures.order_by("-seq").values_list("created_at", flat=True))


def minutes_locked(username: str) -> int:
    """0 when the name may try to log in, else the whole minutes until it may try again."""
    limit = settings.LOGIN_MAX_FAILURES
    if not limit or not username:
        return 0
    window = timedelta(minutes=settings.LOGIN_LOCKOUT_MINUTES)
    failures = _failures(username, window)
    if len(failures) < limit:
        return 0
    unlock_at = failures[limit - 1] + window
    seconds = (unlock_at - timezone.now()).total_seconds()
    return max(math.ceil(seconds / 60), 1) if seconds > 0 else 0


def locked_message(minutes: int) -> str:
    return (
        f"Too many failed log-ins for this user name: log-in is blocked for {minutes} more "
        f"minute{'s' if minutes != 1 else ''}. Ask an administrator if you forgot your password."
    )
