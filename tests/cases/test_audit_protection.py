"""The audit trail protected below the application: PostgreSQL triggers, keyed hashes, a head
anchored outside the database (an exported head, signed checkpoints)."""

import json
import uuid

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from cases.audit import checkpoints
from cases.audit.tasks import audit_checkpoint_write
from cases.audit.trail import (
    GENESIS_HASH,
    SCHEME_HMAC,
    SCHEME_SHA256,
    audit_record,
    event_hash,
    verify_chain,
)
from cases.intake import services
from cases.models import AuditEvent, AuditHead
from tests.cases.test_audit import bypassing_triggers

KEY = "audit-key-for-tests"
postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the triggers exist on PostgreSQL only"
)


@pytest.fixture
def keyed(settings):
    settings.AUDIT_HMAC_KEY = KEY
    return settings


@pytest.fixture
def three_events(keyed, case, clinician):
    services.case_update(case=case, by=clinician, clinical_notes="Fever 4 days")
    assert AuditEvent.objects.count() == 3
    return list(AuditEvent.objects.order_by("seq"))


def refused(statement) -> None:
    """The statement fails in the database (in a savepoint, so the test can go on)."""
    with pytest.raises(DatabaseError, match="append-only|audit head|does not follow"):
        with transaction.atomic():
            statement()


def sql(query: str, params=None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(query, params)


def head() -> str:
    last = AuditEvent.objects.order_by("-seq").first()
    return f"{last.seq}:{last.hash}"


def rewrite_from(seq: int, *, key: bytes | None, scheme: int, **changes) -> None:
    """What an attacker with the database but without the key can do: change event #seq and
    recompute the hashes of every event from it, then move the head to match."""
    with bypassing_triggers() as cursor:
        events = list(AuditEvent.objects.filter(seq__gte=seq).order_by("seq"))
        prev = AuditEvent.objects.get(seq=seq - 1).hash if seq > 1 else GENESIS_HASH
        for event in events:
            for name, value in (changes if event.seq == seq else {}).items():
                setattr(event, name, value)
            fields = {
                f: getattr(event, f)
                for f in ("seq", "created_at", "actor_id", "actor_name", "action", "object_type")
                + ("object_id", "case_id", "before", "after")
            }
            digest = event_hash(**fields, prev_hash=prev, scheme=scheme, key=key)
            cursor.execute(
                "UPDATE cases_auditevent SET action = %s, after = %s, prev_hash = %s, hash = %s, "
                "scheme = %s WHERE seq = %s",
                [event.action, json.dumps(event.after), prev, digest, scheme, event.seq],
            )
            prev = digest
        cursor.execute("UPDATE cases_audithead SET last_hash = %s WHERE id = 1", [prev])


# --- Triggers (PostgreSQL) --------------------------------------------------------------------


@postgres_only
def test_the_database_refuses_every_way_of_changing_or_deleting_events(case):
    event = AuditEvent.objects.get(seq=1)
    table = AuditEvent._meta.db_table
    refused(lambda: sql(f"UPDATE {table} SET action = 'tampered' WHERE seq = 1"))
    refused(lambda: sql(f"DELETE FROM {table} WHERE seq = 2"))
    refused(lambda: AuditEvent._base_manager.filter(pk=event.pk).update(action="tampered"))
    refused(lambda: AuditEvent._base_manager.filter(seq=2)._raw_delete(connection.alias))
    refused(lambda: AuditEvent._base_manager.all()._raw_delete(connection.alias))
    assert AuditEvent.objects.get(seq=1).action == "patient.created"
    assert AuditEvent.objects.count() == 2 and verify_chain() is None


@postgres_only
def test_the_head_only_moves_forward_onto_the_event_just_appended(case):
    last = AuditEvent.objects.get(seq=2)
    refused(lambda: AuditHead._base_manager.update(last_seq=1, last_hash=last.prev_hash))
    refused(lambda: AuditHead._base_manager.update(last_seq=0, last_hash=GENESIS_HASH))
    refused(lambda: AuditHead._base_manager.update(last_seq=3, last_hash="f" * 64))
    refused(lambda: AuditHead._base_manager.all()._raw_delete(connection.alias))
    refused(lambda: sql("DELETE FROM cases_audithead"))
    refused(
        lambda: sql(
            "INSERT INTO cases_audithead (id, last_seq, last_hash) VALUES (2, 0, %s)",
            [GENESIS_HASH],
        )
    )
    # Appending goes on as before, and the head follows it.
    with transaction.atomic():
        audit_record(actor=None, action="x.appended")
    assert AuditHead.objects.get(pk=1).last_seq == 3 and verify_chain() is None


@postgres_only
def test_an_event_that_does_not_follow_the_head_is_refused(case):
    last = AuditEvent.objects.get(seq=2)
    fields = {"created_at": last.created_at, "action": "forged", "hash": "e" * 64}
    refused(lambda: AuditEvent.objects.create(seq=5, prev_hash=last.hash, **fields))
    refused(lambda: AuditEvent.objects.create(seq=3, prev_hash=last.prev_hash, **fields))


@postgres_only
def test_a_role_that_does_not_own_the_tables_cannot_drop_or_disable_the_trigger(case):
    # The production compose's app role (docker/postgres/init-roles.sh): it may read and write rows
    # but owns no table, so it cannot drop or switch off a trigger, nor truncate.
    role = f"malaria_app_test_{uuid.uuid4().hex[:8]}"
    sql(f"CREATE ROLE {role} NOLOGIN")
    sql(f"GRANT USAGE ON SCHEMA public TO {role}")
    sql(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")

    def as_app(query: str):
        return lambda: sql(f"SET LOCAL ROLE {role}; {query}")

    for query in (
        "DROP TRIGGER cases_auditevent_append_only ON cases_auditevent",
        "ALTER TABLE cases_auditevent DISABLE TRIGGER cases_auditevent_append_only",
        "ALTER TABLE cases_auditevent DISABLE TRIGGER ALL",
        "DROP FUNCTION cases_auditevent_append_only() CASCADE",
        "TRUNCATE cases_auditevent CASCADE",
        "SET session_replication_role = replica",
    ):
        with pytest.raises(DatabaseError, match="must be owner|permission denied"):
            with transaction.atomic():
                as_app(query)()
    refused(as_app("DELETE FROM cases_auditevent"))
    assert AuditEvent.objects.count() == 2


# --- Keyed hashes -------------------------------------------------------------------------------


def test_new_events_are_keyed_and_older_unkeyed_ones_keep_verifying(case, clinician, settings):
    assert set(AuditEvent.objects.values_list("scheme", flat=True)) == {SCHEME_SHA256}
    settings.AUDIT_HMAC_KEY = KEY
    services.case_update(case=case, by=clinician, clinical_notes="Fever 4 days")
    assert AuditEvent.objects.get(seq=3).scheme == SCHEME_HMAC
    assert verify_chain() is None
    settings.AUDIT_HMAC_KEY = "another-key"
    assert "HMAC does not match" in verify_chain().message
    settings.AUDIT_HMAC_KEY = ""
    assert verify_chain().message == (
        "event #3 is keyed, but AUDIT_HMAC_KEY is not set: it cannot be verified"
    )


def test_a_suffix_rewritten_with_recomputed_hashes_is_caught_without_the_key(three_events):
    rewrite_from(2, key=b"a guessed key", scheme=SCHEME_HMAC, after={"identifier": "other"})
    with pytest.raises(CommandError, match=r"#2: event #2 was altered .*HMAC"):
        call_command("verify_audit")


def test_a_suffix_rewritten_as_unkeyed_events_is_caught(three_events):
    rewrite_from(3, key=None, scheme=SCHEME_SHA256, action="case.deleted")
    with pytest.raises(CommandError, match="event #3 carries no key although event #1"):
        call_command("verify_audit")


# --- The head anchored outside the database -----------------------------------------------------


def test_verify_audit_prints_the_head_to_export(three_events, capsys):
    call_command("verify_audit")
    assert f"Head: {head()}" in capsys.readouterr().out
    call_command("verify_audit", expect_head=head())


def test_a_cut_tail_with_the_head_reset_is_caught_against_the_exported_head(three_events):
    exported = head()
    with bypassing_triggers() as cursor:
        cursor.execute("DELETE FROM cases_auditevent WHERE seq = 3")
        cursor.execute(
            "UPDATE cases_audithead SET last_seq = 2, last_hash = %s", [three_events[1].hash]
        )
    call_command("verify_audit")  # the chain alone is consistent
    with pytest.raises(
        CommandError, match="the expected head records #3, but the trail ends at #2"
    ):
        call_command("verify_audit", expect_head=exported)


def test_an_emptied_trail_with_the_head_reset_is_caught_against_the_exported_head(three_events):
    exported = head()
    with bypassing_triggers() as cursor:
        cursor.execute("DELETE FROM cases_auditevent")
        cursor.execute("UPDATE cases_audithead SET last_seq = 0, last_hash = %s", [GENESIS_HASH])
    call_command("verify_audit")
    with pytest.raises(CommandError, match="records #3, but the trail has no events"):
        call_command("verify_audit", expect_head=exported)


def test_a_rewritten_suffix_is_caught_against_the_exported_head_even_with_the_key(three_events):
    exported = head()
    rewrite_from(3, key=KEY.encode(), scheme=SCHEME_HMAC, action="case.deleted")
    call_command("verify_audit")  # whoever holds the key can rewrite the chain consistently
    with pytest.raises(CommandError, match="the expected head records #3 with a different hash"):
        call_command("verify_audit", expect_head=exported)


def test_expect_head_must_be_seq_colon_hash(three_events):
    with pytest.raises(CommandError, match="give SEQ:HASH"):
        call_command("verify_audit", expect_head="3")


def test_the_head_records_the_last_event_with_a_different_hash(three_events):
    with bypassing_triggers() as cursor:
        cursor.execute("UPDATE cases_audithead SET last_hash = %s", ["f" * 64])
    with pytest.raises(CommandError, match="#3: the head records #3 with a different hash"):
        call_command("verify_audit")


def test_the_periodic_task_writes_a_signed_checkpoint_when_the_trail_has_grown(three_events):
    name = audit_checkpoint_write()
    assert name.endswith("-000000000003.json")
    stored = json.loads(default_storage.open(f"audit-checkpoints/{name}").read())
    assert stored["seq"] == 3 and stored["hash"] == three_events[2].hash and stored["hmac"]
    assert audit_checkpoint_write() == ""  # nothing new
    with transaction.atomic():
        audit_record(actor=None, action="x.appended")
    assert audit_checkpoint_write().endswith("-000000000004.json")
    assert checkpoints.checkpoint_latest().seq == 4


def test_no_checkpoint_is_written_without_a_key(case, settings):
    settings.AUDIT_HMAC_KEY = ""
    assert audit_checkpoint_write() == ""


def test_verify_audit_checks_the_latest_checkpoint(three_events, capsys):
    checkpoints.checkpoint_write()
    call_command("verify_audit")
    assert "Matches the latest checkpoint" in capsys.readouterr().out
    with bypassing_triggers() as cursor:
        cursor.execute("DELETE FROM cases_auditevent WHERE seq = 3")
        cursor.execute(
            "UPDATE cases_audithead SET last_seq = 2, last_hash = %s", [three_events[1].hash]
        )
    with pytest.raises(
        CommandError, match=r"the checkpoint .* records #3, but the trail ends at #2"
    ):
        call_command("verify_audit")


def test_a_forged_checkpoint_is_refused(three_events):
    latest = checkpoints.checkpoint_write()
    forged = {
        "seq": 2,
        "hash": three_events[1].hash,
        "written_at": latest.written_at,
        "hmac": "0" * 64,
    }
    default_storage.save(
        "audit-checkpoints/99990101T000000000000Z-000000000002.json",
        ContentFile(json.dumps(forged).encode()),
    )
    with pytest.raises(CommandError, match="is not signed with AUDIT_HMAC_KEY"):
        call_command("verify_audit")


def test_the_audit_tasks_are_registered_and_scheduled_by_beat(settings):
    from malariaweb.celery import app

    app.loader.import_default_modules()
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"cases.audit.write_checkpoint", "cases.audit.prune_login_failures"} <= scheduled
    assert scheduled <= set(app.tasks)
