"""The tamper-evident audit trail.

Every state change calls audit_record() inside the transaction that makes the change. Events form
a hash chain: each event's hash covers its own content and the previous event's hash, and the chain
head (AuditHead) is locked while an event is appended, so the chain stays linear under concurrent
writers. verify_chain() recomputes every hash; an altered, inserted or removed row breaks it.
"""

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.utils import timezone

from cases.models import AuditEvent, AuditHead, Case

GENESIS_HASH = "0" * 64


def to_json(value: Any) -> Any:
    """Normalise a value to plain JSON types (dates, decimals and UUIDs become strings)."""
    if value is None:
        return None
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def snapshot(obj: models.Model, fields: list[str]) -> dict:
    """The named fields of a model instance as JSON (foreign keys as ids)."""
    data = {}
    for name in fields:
        field = obj._meta.get_field(name)
        data[name] = getattr(obj, field.attname)
    return to_json(data)


def event_hash(
    *,
    seq: int,
    created_at,
    actor_id: int | None,
    actor_name: str,
    action: str,
    object_type: str,
    object_id: str,
    case_id: int | None,
    before: Any,
    after: Any,
    prev_hash: str,
) -> str:
    content = {
        "seq": seq,
        "created_at": created_at.isoformat(),
        "actor_id": actor_id,
        "actor_name": actor_name,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "case_id": case_id,
        "before": before,
        "after": after,
        "prev_hash": prev_hash,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _head_for_update() -> AuditHead:
    head = AuditHead.objects.select_for_update().filter(pk=1).first()
    if head is None:
        AuditHead.objects.get_or_create(pk=1)
        head = AuditHead.objects.select_for_update().get(pk=1)
    return head


def audit_record(
    *,
    actor,
    action: str,
    obj: models.Model | None = None,
    case: Case | None = None,
    before: Any = None,
    after: Any = None,
) -> AuditEvent:
    """Append one event. Must run inside the transaction that makes the change it records."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_record() must be called inside transaction.atomic().")
    head = _head_for_update()
    actor = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    fields = {
        "seq": head.last_seq + 1,
        # Microseconds survive every database backend; the hash is computed on this exact value.
        "created_at": timezone.now(),
        "actor_id": actor.pk if actor else None,
        "actor_name": actor.get_username() if actor else "system",
        "action": action,
        "object_type": obj._meta.label_lower if obj is not None else "",
        "object_id": str(obj.pk) if obj is not None else "",
        "case_id": case.pk if case is not None else None,
        "before": to_json(before),
        "after": to_json(after),
        "prev_hash": head.last_hash,
    }
    digest = event_hash(**fields)
    event = AuditEvent.objects.create(hash=digest, **fields)
    head.last_seq = event.seq
    head.last_hash = digest
    head.save(update_fields=["last_seq", "last_hash"])
    return event


@dataclass
class ChainProblem:
    seq: int | None
    message: str


def verify_chain(batch_size: int = 2000) -> ChainProblem | None:
    """Recompute the chain. Returns the first problem found, or None if the trail is intact."""
    prev_hash, expected_seq = GENESIS_HASH, 1
    for event in AuditEvent.objects.order_by("seq").iterator(chunk_size=batch_size):
        if event.seq != expected_seq:
            return ChainProblem(expected_seq, f"event #{expected_seq} is missing")
        if event.prev_hash != prev_hash:
            return ChainProblem(event.seq, f"event #{event.seq} does not follow the previous one")
        recomputed = event_hash(
            seq=event.seq,
            created_at=event.created_at,
            actor_id=event.actor_id,
            actor_name=event.actor_name,
            action=event.action,
            object_type=event.object_type,
            object_id=event.object_id,
            case_id=event.case_id,
            before=event.before,
            after=event.after,
            prev_hash=event.prev_hash,
        )
        if recomputed != event.hash:
            return ChainProblem(event.seq, f"event #{event.seq} was altered (hash mismatch)")
        prev_hash, expected_seq = event.hash, expected_seq + 1
    head = AuditHead.objects.filter(pk=1).first()
    last_seq = expected_seq - 1
    if head is not None and (head.last_seq != last_seq or head.last_hash != prev_hash):
        return ChainProblem(
            last_seq + 1, f"the trail ends at #{last_seq} but its head records #{head.last_seq}"
        )
    return None
