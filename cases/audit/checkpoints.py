"""Signed checkpoints of the audit trail's head, written to file storage outside the database.

A checkpoint records the last event's number and hash and when it was taken, signed with
AUDIT_HMAC_KEY. Whoever can rewrite the database can cut off the tail of the trail or empty it
and reset its head so that the chain still verifies; the latest checkpoint pins the trail up to
its event, and it cannot be forged without the key. A periodic task (cases.audit.tasks) writes one
every AUDIT_CHECKPOINT_MINUTES when the trail has grown; `verify_audit` checks the latest.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from cases.audit.trail import hmac_key
from cases.models import AuditEvent

FOLDER = "audit-checkpoints"


@dataclass
class Checkpoint:
    name: str
    seq: int
    hash: str
    written_at: str
    signature: str

    def signed_content(self) -> bytes:
        content = {"seq": self.seq, "hash": self.hash, "written_at": self.written_at}
        return json.dumps(content, sort_keys=True, separators=(",", ":")).encode()

    def is_signed_with(self, key: bytes) -> bool:
        expected = hmac.new(key, self.signed_content(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.signature)

    def describe(self) -> str:
        return f"checkpoint {self.name} (written {self.written_at})"


def _names() -> list[str]:
    try:
        _dirs, files = default_storage.listdir(FOLDER)
    except FileNotFoundError:
        return []
    # Names start with the UTC time they were written: sorted by name is sorted by time.
    return sorted(name for name in files if name.endswith(".json"))


def checkpoint_read(name: str) -> Checkpoint:
    with default_storage.open(f"{FOLDER}/{name}", "rb") as handle:
        data = json.loads(handle.read())
    return Checkpoint(
        name=name,
        seq=int(data["seq"]),
        hash=str(data["hash"]),
        written_at=str(data["written_at"]),
        signature=str(data["hmac"]),
    )


def checkpoint_latest() -> Checkpoint | None:
    names = _names()
    return checkpoint_read(names[-1]) if names else None


def checkpoint_write(now: datetime | None = None) -> Checkpoint | None:
    """Write a checkpoint of the current head; None when there is no key, no event, or no new
    event since the latest checkpoint."""
    key = hmac_key()
    last = AuditEvent.objects.order_by("-seq").only("seq", "hash").first()
    if key is None or last is None:
        return None
    latest = checkpoint_latest()
    if latest is not None and latest.seq == last.seq and latest.hash == last.hash:
        return None
    now = now or timezone.now()
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    checkpoint = Checkpoint(
        name=f"{stamp}-{last.seq:012d}.json",
        seq=last.seq,
        hash=last.hash,
        written_at=now.isoformat(),
        signature="",
    )
    checkpoint.signature = hmac.new(key, checkpoint.signed_content(), hashlib.sha256).hexdigest()
    body = {
        "seq": checkpoint.seq,
        "hash": checkpoint.hash,
        "written_at": checkpoint.written_at,
        "hmac": checkpoint.signature,
    }
    checkpoint.name = default_storage.save(
        f"{FOLDER}/{checkpoint.name}", ContentFile(json.dumps(body, indent=1).encode())
    ).rsplit("/", 1)[-1]
    return checkpoint
