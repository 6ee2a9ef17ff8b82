"""Refuse log-ins after repeated failures (password guessing), per user name and per address.

Every failed log-in is a LoginFailure row, kept for the lockout window; the count is shared by every
web process and survives restarts without a cache. A user name is locked once it has
``LOGIN_MAX_FAILURES`` failures within ``LOGIN_LOCKOUT_MINUTES`` and since its last successful
log-in; a client address once it has ``LOGIN_MAX_FAILURES_PER_ADDRESS`` failures (any names) within
the window. Either unlocks when the oldest of those failures leaves the window. While locked, the
password is not checked and nothing more is written.

The name is counted as authentication matches it: stripped of surrounding white space and
NFKC-normalised, as Django's log-in form and the user model do, so " admin", "admin\\t" and
full-width "ａｄｍｉｎ" all count against "admin". (The match is case-sensitive on PostgreSQL and
SQLite, so "Admin" is another name.) Failures for existing names are audited one by one
(``user.login_failed``); those for unknown names are summarised in one ``user.login_failed_unknown``
event when their rows leave the window (login_failures_prune), so the trail cannot be grown
without bound by guessing names.
"""

from __future__ import annotations

import ipaddress
import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from cases.audit.trail import audit_record
from cases.models import AuditEvent, LoginFailure

USERNAME_MAX_LENGTH = 150


def canonical_username(raw: object) -> str:
    """The user name that authentication would look up for what was typed."""
    value = str(raw if raw is not None else "")[: USERNAME_MAX_LENGTH * 8].strip()
    if len(value) > USERNAME_MAX_LENGTH:
        return value[:USERNAME_MAX_LENGTH]  # longer than any user name: the form refuses it
    return get_user_model().normalize_username(value)[:USERNAME_MAX_LENGTH]


def client_address(request: HttpRequest) -> str:
    """REMOTE_ADDR, or behind TRUSTED_PROXY_COUNT proxies the address the outermost one saw."""
    address = request.META.get("REMOTE_ADDR", "")
    proxies = settings.TRUSTED_PROXY_COUNT
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if proxies and forwarded:
        # Each trusted proxy appends the address it received from; entries to the left of the
        # outermost proxy's were written by the client and prove nothing.
        address = forwarded[-proxies] if len(forwarded) >= proxies else forwarded[0]
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return str(address)[:45]


def _window() -> timedelta:
    return timedelta(minutes=settings.LOGIN_LOCKOUT_MINUTES)


def _minutes_until(failures: list[datetime], limit: int) -> int:
    """Whole minutes until the limit-th newest failure leaves the window (0 = not locked)."""
    if not limit or len(failures) < limit:
        return 0
    seconds = (failures[limit - 1] + _window() - timezone.now()).total_seconds()
    return max(math.ceil(seconds / 60), 1) if seconds > 0 else 0


def _name_failures(username: str, since: datetime) -> list[datetime]:
    last_login = (
        AuditEvent.objects.filter(action="user.login", actor_name=username, created_at__gte=since)
        .order_by("-seq")
        .values_list("created_at", flat=True)
        .first()
    )
    rows = LoginFailure.objects.filter(username=username, created_at__gte=last_login or since)
    return list(rows.order_by("-created_at").values_list("created_at", flat=True))


def _address_failures(address: str, since: datetime) -> list[datetime]:
    rows = LoginFailure.objects.filter(address=address, created_at__gte=since)
    limit = settings.LOGIN_MAX_FAILURES_PER_ADDRESS
    return list(rows.order_by("-created_at").values_list("created_at", flat=True)[:limit])


@dataclass
class Refusal:
    by_address: bool
    minutes: int

    @property
    def message(self) -> str:
        scope = "from this address" if self.by_address else "for this user name"
        return locked_message(self.minutes, scope)


def refusal(username: str, address: str) -> Refusal | None:
    """Why a log-in for this name from this address is refused before its password is checked."""
    since = timezone.now() - _window()
    per_address = settings.LOGIN_MAX_FAILURES_PER_ADDRESS
    if address and per_address:
        minutes = _minutes_until(_address_failures(address, since), per_address)
        if minutes:
            return Refusal(by_address=True, minutes=minutes)
    if username and settings.LOGIN_MAX_FAILURES:
        minutes = _minutes_until(_name_failures(username, since), settings.LOGIN_MAX_FAILURES)
        if minutes:
            return Refusal(by_address=False, minutes=minutes)
    return None


def record_failure(username: str, address: str) -> Refusal | None:
    """Count (and for an existing name, audit) a failed log-in and the lock it may start; returns
    the refusal that now applies, if any."""
    users = get_user_model()._default_manager
    known = bool(username) and users.filter(**{get_user_model().USERNAME_FIELD: username}).exists()
    with transaction.atomic():
        LoginFailure.objects.create(
            created_at=timezone.now(), username=username, address=address, known=known
        )
        if known:
            after = {"username": username, "address": address}
            audit_record(actor=None, action="user.login_failed", after=after)
    refused = refusal(username, address)
    # Reached only by the failure that starts a lock: locked attempts are not counted. A lock on
    # an unknown name is not audited (that would let name guessing grow the trail).
    if refused is not None and (refused.by_address or known):
        action = "address.login_locked" if refused.by_address else "user.login_locked"
        after = {"address": address} if refused.by_address else {"username": username}
        with transaction.atomic():
            audit_record(actor=None, action=action, after=after)
    return refused


def login_failures_prune(batch: int = 10_000) -> int:
    """Delete failures that have left the window, first auditing those for unknown names as one
    summary event. Returns the number of rows deleted."""
    cutoff = timezone.now() - _window()
    with transaction.atomic():
        # skip_locked: two runs at once summarise disjoint rows, never the same rows twice.
        rows = list(
            LoginFailure.objects.select_for_update(skip_locked=True)
            .filter(created_at__lt=cutoff)
            .order_by("created_at")
            .values_list("id", "username", "address", "created_at", "known")[:batch]
        )
        unknown = [row for row in rows if not row[4]]
        if unknown:
            names = Counter(row[1] for row in unknown)
            addresses = Counter(row[2] for row in unknown)
            summary = {
                "count": len(unknown),
                "first_at": unknown[0][3],
                "last_at": unknown[-1][3],
                "usernames": dict(names.most_common(20)),
                "distinct_usernames": len(names),
                "addresses": dict(addresses.most_common(20)),
                "distinct_addresses": len(addresses),
            }
            audit_record(actor=None, action="user.login_failed_unknown", after=summary)
        deleted, _ = LoginFailure.objects.filter(id__in=[row[0] for row in rows]).delete()
    return deleted


def locked_message(minutes: int, scope: str = "for this user name") -> str:
    return (
        f"Too many failed log-ins {scope}: log-in is blocked for {minutes} more "
        f"minute{'s' if minutes != 1 else ''}. Ask an administrator if you forgot your password."
    )
