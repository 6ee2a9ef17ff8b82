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
from django.db import transaction
from django.utils import timezone

from cases.audit.trail import audit_record
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


def record_failure(username: str) -> int:
    """Audit a failed log-in (and the lock it may start); returns minutes_locked() after it."""
    with transaction.atomic():
        audit_record(actor=None, action="user.login_failed", after={"username": username})
    minutes = minutes_locked(username)
    if minutes:  # reached only by the failure that starts a lock: locked names are not checked
        with transaction.atomic():
            audit_record(actor=None, action="user.login_locked", after={"username": username})
    return minutes


def locked_message(minutes: int) -> str:
    return (
        f"Too many failed log-ins for this user name: log-in is blocked for {minutes} more "
        f"minute{'s' if minutes != 1 else ''}. Ask an administrator if you forgot your password."
    )
