from contextlib import contextmanager

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from cases.audit.trail import audit_record, verify_chain
from cases.intake import services
from cases.models import AuditEvent


@contextmanager
def bypassing_triggers():
    """A cursor that tampers as a database superuser can: with the audit triggers switched off
    for the session (PostgreSQL; SQLite has no triggers). verify_audit must still notice."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        try:
            yield cursor
        finally:
            if connection.vendor == "postgresql":
                cursor.execute("SET LOCAL session_replication_role = origin")


def _raw_update(seq: int, column: str, value) -> None:
    table = AuditEvent._meta.db_table
    with bypassing_triggers() as cursor:
        cursor.execute(f"UPDATE {table} SET {column} = %s WHERE seq = %s", [value, seq])


def test_every_state_change_writes_a_chained_event(case):
    events = list(AuditEvent.objects.order_by("seq"))
    assert [e.action for e in events] == ["patient.created", "case.created"]
    assert events[0].prev_hash == "0" * 64
    assert events[1].prev_hash == events[0].hash
    assert events[1].case_id == case.pk
    assert events[1].actor.username == "clin"
    assert events[1].after["clinical_notes"] == "Fever 3 days"


def test_an_update_records_before_and_after(case, clinician):
    services.case_update(case=case, by=clinician, clinical_notes="Fever 5 days, chills")
    event = AuditEvent.objects.get(action="case.updated")
    assert event.before["clinical_notes"] == "Fever 3 days"
    assert event.after["clinical_notes"] == "Fever 5 days, chills"


def test_events_cannot_be_changed_or_deleted_through_the_orm(case):
    event = AuditEvent.objects.first()
    event.action = "tampered"
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).update(action="tampered")
    with pytest.raises(PermissionError):
        AuditEvent.objects.all().delete()


@pytest.mark.django_db(transaction=True)
def test_audit_record_refuses_to_run_outside_a_transaction(clinician):
    with pytest.raises(RuntimeError):
        audit_record(actor=clinician, action="x")


def test_verify_audit_passes_on_an_intact_trail(case, capsys):
    call_command("verify_audit")
    assert "2 events verified" in capsys.readouterr().out


def test_verify_audit_names_an_altered_event(case, clinician):
    services.case_update(case=case, by=clinician, clinical_notes="changed")
    _raw_update(2, "action", "case.deleted")
    assert verify_chain().seq == 2
    with pytest.raises(CommandError, match="#2"):
        call_command("verify_audit")


def test_verify_audit_notices_altered_json(case):
    _raw_update(1, "after", '{"identifier": "someone-else"}')
    with pytest.raises(CommandError, match="#1.*altered"):
        call_command("verify_audit")


def test_verify_audit_notices_a_removed_event(case, clinician):
    services.case_update(case=case, by=clinician, clinical_notes="changed")
    with bypassing_triggers() as cursor:
        cursor.execute(f"DELETE FROM {AuditEvent._meta.db_table} WHERE seq = 2")
    with pytest.raises(CommandError, match="#2.*missing"):
        call_command("verify_audit")


def test_verify_audit_notices_the_last_event_removed(case):
    with bypassing_triggers() as cursor:
        cursor.execute(f"DELETE FROM {AuditEvent._meta.db_table} WHERE seq = 2")
    with pytest.raises(CommandError, match="#2"):
        call_command("verify_audit")


def test_a_failed_change_leaves_no_event(case, clinician):
    before = AuditEvent.objects.count()
    with pytest.raises(ValueError):
        with transaction.atomic():
            services.case_update(case=case, by=clinician, clinical_notes="rolled back")
            raise ValueError("boom")
    assert AuditEvent.objects.count() == before
    assert verify_chain() is None
