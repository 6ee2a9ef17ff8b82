"""Sign-offs as append-only rows (SignOff), and heatmap paths built by their upload_to callable.

The data migration keeps every sign-off it can find: each `case.signed_off` audit event (so a
sign-off that a reopen blanked from the case's columns comes back), then the case's current
sign-off columns where no event recorded it. Nothing is written to the audit trail.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.utils.dateparse import parse_datetime

import cases.models


def _from_event(event) -> dict | None:
    after = event.after or {}
    signed_at = parse_datetime(after.get("signed_off_at") or "")
    signer = after.get("signed_off_by") or event.actor_id
    diagnosis = after.get("final_diagnosis")
    if signed_at is None or signer is None or not diagnosis:
        return None
    low, high = (after.get("final_parasitemia_ci95") or [None, None])[:2]
    return {
        "case_id": event.case_id,
        "signed_by_id": signer,
        "signed_at": signed_at,
        "diagnosis": diagnosis,
        "positive_cells": after.get("final_positive_cells") or 0,
        "reviewed_cells": after.get("final_reviewed_cells") or 0,
        "parasitemia": after.get("final_parasitemia"),
        "parasitemia_low": low,
        "parasitemia_high": high,
        "note": after.get("sign_off_note") or "",
    }


def _from_case(case) -> dict:
    return {
        "case_id": case.pk,
        "signed_by_id": case.signed_off_by_id,
        "signed_at": case.signed_off_at,
        "diagnosis": case.final_diagnosis,
        "positive_cells": case.final_positive_cells or 0,
        "reviewed_cells": case.final_reviewed_cells or 0,
        "parasitemia": case.final_parasitemia,
        "parasitemia_low": case.final_parasitemia_low,
        "parasitemia_high": case.final_parasitemia_high,
        "note": case.sign_off_note,
    }


def sign_offs_from_history(apps, schema_editor):
    AuditEvent = apps.get_model("cases", "AuditEvent")
    Case = apps.get_model("cases", "Case")
    SignOff = apps.get_model("cases", "SignOff")
    rows: dict[tuple[int, object], dict] = {}
    events = AuditEvent.objects.filter(action="case.signed_off", case__isnull=False)
    for event in events.order_by("seq").iterator():
        row = _from_event(event)
        if row is not None:
            rows.setdefault((row["case_id"], row["signed_at"]), row)
    signed = Case.objects.filter(signed_off_at__isnull=False, signed_off_by__isnull=False)
    for case in signed.exclude(final_diagnosis="").iterator():
        rows.setdefault((case.pk, case.signed_off_at), _from_case(case))
    SignOff.objects.bulk_create([SignOff(**row) for row in rows.values()], batch_size=500)


class Migration(migrations.Migration):
    dependencies = [
        ("cases", "0008_audit_protection"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="prediction",
            name="heatmap",
            field=models.FileField(
                blank=True,
                help_text="Grad-CAM overlay (PNG).",
                max_length=255,
                upload_to=cases.models.heatmap_upload_path,
            ),
        ),
        migrations.AlterField(
            model_name="prediction",
            name="heatmap_raw",
            field=models.FileField(
                blank=True,
                help_text="Grad-CAM map (PNG).",
                max_length=255,
                upload_to=cases.models.heatmap_upload_path,
            ),
        ),
        migrations.CreateModel(
            name="SignOff",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("signed_at", models.DateTimeField()),
                (
                    "diagnosis",
                    models.CharField(
                        choices=[("negative", "Negative"), ("positive", "Positive")],
                        max_length=10,
                    ),
                ),
                (
                    "positive_cells",
                    models.PositiveIntegerField(
                        help_text="Cells the reviewer labelled parasitized."
                    ),
                ),
                ("reviewed_cells", models.PositiveIntegerField()),
                (
                    "parasitemia",
                    models.FloatField(
                        blank=True,
                        help_text="Positive cells / reviewed cells x 100 (%).",
                        null=True,
                    ),
                ),
                (
                    "parasitemia_low",
                    models.FloatField(blank=True, help_text="95% Wilson, %.", null=True),
                ),
                (
                    "parasitemia_high",
                    models.FloatField(blank=True, help_text="95% Wilson, %.", null=True),
                ),
                ("note", models.TextField(blank=True)),
                (
                    "case",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="sign_offs",
                        to="cases.case",
                    ),
                ),
                (
                    "signed_by",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["-signed_at", "-id"],
                "indexes": [
                    models.Index(
                        fields=["case", "-signed_at"], name="cases_signo_case_id_1ed5dd_idx"
                    )
                ],
            },
        ),
        migrations.RunPython(sign_offs_from_history, migrations.RunPython.noop),
    ]
