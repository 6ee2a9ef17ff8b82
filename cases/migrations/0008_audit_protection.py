"""The audit trail protected below the application.

AuditEvent.scheme records how each event's hash was computed (1 = SHA-256, for the events written
before this migration; 2 = HMAC-SHA256 with AUDIT_HMAC_KEY). LoginFailure holds failed log-ins for
the lockout window. On PostgreSQL, triggers make the trail append-only for every code path (ORM,
_base_manager, QuerySet.update, _raw_delete, raw SQL): events can be inserted only as the next
link of the chain and never updated or deleted; the head can only move forward onto the event just
appended and never be deleted. SQLite has no such triggers (see README, "The audit trail").
"""

from django.db import migrations, models

GENESIS = "0" * 64

CREATE_SQL = f"""
CREATE FUNCTION cases_auditevent_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head_seq bigint;
    head_hash varchar(64);
BEGIN
    IF TG_OP <> 'INSERT' THEN
        RAISE EXCEPTION 'the audit trail is append-only: % of event #% refused', TG_OP, OLD.seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT last_seq, last_hash INTO head_seq, head_hash FROM cases_audithead WHERE id = 1;
    IF NOT FOUND OR NEW.seq <> head_seq + 1 OR NEW.prev_hash <> head_hash THEN
        RAISE EXCEPTION 'audit event #% refused: it does not follow the head (#%)', NEW.seq, head_seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER cases_auditevent_append_only
    BEFORE INSERT OR UPDATE OR DELETE ON cases_auditevent
    FOR EACH ROW EXECUTE FUNCTION cases_auditevent_append_only();

CREATE FUNCTION cases_audithead_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last_event record;
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'the audit head cannot be deleted' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.id <> 1 THEN
        RAISE EXCEPTION 'the audit head is the single row with id 1'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP = 'UPDATE' THEN
        -- The head moves one step, onto the event appended in this transaction.
        IF NEW.last_seq = OLD.last_seq AND NEW.last_hash = OLD.last_hash THEN
            RETURN NEW;
        END IF;
        IF NEW.last_seq <> OLD.last_seq + 1 OR NOT EXISTS (
            SELECT 1 FROM cases_auditevent
            WHERE seq = NEW.last_seq AND hash = NEW.last_hash AND prev_hash = OLD.last_hash
        ) THEN
            RAISE EXCEPTION 'the audit head can only move from #% to the next event', OLD.last_seq
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END IF;
    -- INSERT: only the true end of the trail (genesis when it is empty).
    SELECT seq, hash INTO last_event FROM cases_auditevent ORDER BY seq DESC LIMIT 1;
    IF (last_event IS NULL AND (NEW.last_seq <> 0 OR NEW.last_hash <> '{GENESIS}'))
        OR (last_event IS NOT NULL
            AND (NEW.last_seq <> last_event.seq OR NEW.last_hash <> last_event.hash)) THEN
        RAISE EXCEPTION 'the audit head must record the last event of the trail'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER cases_audithead_forward_only
    BEFORE INSERT OR UPDATE OR DELETE ON cases_audithead
    FOR EACH ROW EXECUTE FUNCTION cases_audithead_forward_only();
"""

DROP_SQL = """
DROP TRIGGER IF EXISTS cases_audithead_forward_only ON cases_audithead;
DROP FUNCTION IF EXISTS cases_audithead_forward_only();
DROP TRIGGER IF EXISTS cases_auditevent_append_only ON cases_auditevent;
DROP FUNCTION IF EXISTS cases_auditevent_append_only();
"""


def create_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE_SQL, params=None)


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_SQL, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("cases", "0007_image_recovery"),
    ]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="scheme",
            field=models.PositiveSmallIntegerField(default=1),
        ),
        migrations.CreateModel(
            name="LoginFailure",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("created_at", models.DateTimeField()),
                ("username", models.CharField(max_length=150)),
                ("address", models.CharField(blank=True, max_length=45)),
                ("known", models.BooleanField()),
            ],
            options={
                "indexes": [
                    models.Index(
                        fields=["username", "created_at"], name="cases_login_usernam_1d8e05_idx"
                    ),
                    models.Index(
                        fields=["address", "created_at"], name="cases_login_address_6c2b20_idx"
                    ),
                    models.Index(fields=["created_at"], name="cases_login_created_6397b8_idx"),
                ],
            },
        ),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
