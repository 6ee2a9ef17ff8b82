"""The tamper-evident audit trail.

Every state change calls audit_record() inside the transaction that makes the change. Events form
a hash chain: each event's hash covers its own content and the previous event's hash, and the chain
head (AuditHead) is locked while an event is appended, so the chain stays linear under concurrent
writers. verify_chain() recomputes every hash; an altered, inserted or removed row breaks it.

With AUDIT_HMAC_KEY set, each new event's hash is an HMAC keyed with that secret (scheme 2), so
whoever can write the database but does not hold the key cannot recompute a rewritten suffix. Events
written before the key existed keep their plain SHA-256 (scheme 1) and keep verifying; once a keyed
event exists, an unkeyed one after it is itself a sign of tampering. On PostgreSQL, triggers
(migration 0008) refuse every UPDATE and DELETE of events and let the head only move forward.
What the database alone cannot show (the tail cut off, or everything deleted with the head reset)
is caught against a head recorded outside it: verify_anchor() with an exported head or a signed
checkpoint (cases.audit.checkpoints).
"""

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.utils import timezone

from cases.models import AuditEvent, AuditHead, Case

GENESIS_HASH = "0" * 64
SCHEME_SHA256 = 1
SCHEME_HMAC = 2


def hmac_key() -> bytes | None:
    """AUDIT_HMAC_KEY as bytes, or None when the trail is not keyed."""
    key = settings.AUDIT_HMAC_KEY
    return key.encode() if key else None


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
    scheme: int = SCHEME_SHA256,
    key: bytes | None = None,
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
    if scheme == SCHEME_SHA256:
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(canonical.encode()).hexdigest()
    if scheme != SCHEME_HMAC or not key:
        raise ValueError(f"audit hash scheme {scheme} needs AUDIT_HMAC_KEY")
    content["scheme"] = scheme
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


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
    key = hmac_key()
    fields["scheme"] = SCHEME_HMAC if key else SCHEME_SHA256
    digest = event_hash(key=key, **fields)
    event = AuditEvent.objects.create(hash=digest, **fields)
    head.last_seq = event.seq
    head.last_hash = digest
    head.save(update_fields=["last_seq", "last_hash"])
    return event


@dataclass
class ChainProblem:
    seq: int | None
    message: str


def _recompute(event: AuditEvent, key: bytes | None) -> str:
    return event_hash(
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
        scheme=event.scheme,
        key=key,
    )


def _event_problem(event: AuditEvent, key: bytes | None, first_keyed: int | None) -> str | None:
    if event.scheme == SCHEME_HMAC and not key:
        return f"event #{event.seq} is keyed, but AUDIT_HMAC_KEY is not set: it cannot be verified"
    if event.scheme == SCHEME_SHA256 and first_keyed is not None:
        return (
            f"event #{event.seq} carries no key although event #{first_keyed} before it does "
            "(rewritten without the key, or AUDIT_HMAC_KEY was removed)"
        )
    if event.scheme not in (SCHEME_SHA256, SCHEME_HMAC):
        return f"event #{event.seq} names an unknown hash scheme {event.scheme}"
    if _recompute(event, key) != event.hash:
        keyed = " (its HMAC does not match AUDIT_HMAC_KEY)" if event.scheme == SCHEME_HMAC else ""
        return f"event #{event.seq} was altered (hash mismatch){keyed}"
    return None


def verify_chain(batch_size: int = 2000) -> ChainProblem | None:
    """Recompute the chain. Returns the first problem found, or None if the trail is intact."""
    key = hmac_key()
    prev_hash, expected_seq, first_keyed = GENESIS_HASH, 1, None
    for event in AuditEvent.objects.order_by("seq").iterator(chunk_size=batch_size):
        if event.seq != expected_seq:
            return ChainProblem(expected_seq, f"event #{expected_seq} is missing")
        if event.prev_hash != prev_hash:
            return ChainProblem(event.seq, f"event #{event.seq} does not follow the previous one")
        problem = _event_problem(event, key, first_keyed)
        if problem:
            return ChainProblem(event.seq, problem)
        if event.scheme == SCHEME_HMAC and first_keyed is None:
            first_keyed = event.seq
        prev_hash, expected_seq = event.hash, expected_seq + 1
    last_seq = expected_seq - 1
    head = AuditHead.objects.filter(pk=1).first()
    if head is not None and head.last_seq != last_seq:
        return ChainProblem(
            min(head.last_seq, last_seq + 1),
            f"the trail ends at #{last_seq} but its head records #{head.last_seq}",
        )
    if head is not None and head.last_hash != prev_hash:
        return ChainProblem(last_seq, f"the head records #{last_seq} with a different hash")
    return None


def verify_anchor(seq: int, digest: str, source: str) -> ChainProblem | None:
    """Check the trail against a head recorded outside the database (an exported head or a
    checkpoint, named by `source`): event #seq must still exist with exactly that hash. Together
    with verify_chain(), this pins every event up to #seq; a cut tail or an emptied trail fails."""
    if seq == 0:
        return None
    event = AuditEvent.objects.filter(seq=seq).only("seq", "hash").first()
    if event is None:
        last = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
        where = f"the trail ends at #{last}" if last else "the trail has no events"
        return ChainProblem(seq, f"{source} records #{seq}, but {where}")
    if event.hash != digest:
        return ChainProblem(
            seq,
            f"{source} records #{seq} with a different hash "
            f"({digest[:12]}…, the trail has {event.hash[:12]}…)",
        )
    return None
