"""Writes: every state change of patients, cases and images, each with its audit event.

Functions are named <noun>_<verb>, take keyword arguments only, validate with full_clean() and
run in one transaction together with their AuditEvent. Analysis tasks are enqueued only after the
transaction commits (transaction.on_commit), with image ids as their only arguments.
"""

import logging
import uuid
from dataclasses import dataclass, field

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from cases.analysis import queue
from cases.analysis.status import case_status_refresh
from cases.audit.trail import audit_record, snapshot
from cases.intake.uploads import Rejected, ValidFile, validate_files
from cases.models import Case, Image, Patient, Site

logger = logging.getLogger(__name__)

PATIENT_FIELDS = ["site", "identifier", "sex", "birth_date", "age_years"]
CASE_FIELDS = ["patient", "clinical_notes", "status"]


def require_site_member(user, site: Site) -> None:
    if not (user.is_superuser or site.members.filter(pk=user.pk).exists()):
        raise PermissionDenied("You are not a member of this site.")


@transaction.atomic
def patient_create(
    *,
    site: Site,
    identifier: str,
    by,
    sex: str = Patient.Sex.UNKNOWN,
    birth_date=None,
    age_years: int | None = None,
) -> Patient:
    require_site_member(by, site)
    patient = Patient(
        site=site,
        identifier=identifier.strip(),
        sex=sex,
        birth_date=birth_date,
        age_years=age_years,
        created_by=by,
    )
    patient.full_clean()
    patient.save()
    audit_record(
        actor=by, action="patient.created", obj=patient, after=snapshot(patient, PATIENT_FIELDS)
    )
    return patient


@transaction.atomic
def patient_update(*, patient: Patient, by, **changes) -> Patient:
    patient = Patient.objects.select_for_update().get(pk=patient.pk)
    before = snapshot(patient, PATIENT_FIELDS)
    allowed = {"identifier", "sex", "birth_date", "age_years"}
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"cannot change {', '.join(sorted(unknown))}")
    for name, value in changes.items():
        setattr(patient, name, value)
    patient.full_clean()
    patient.save(update_fields=list(changes))
    after = snapshot(patient, PATIENT_FIELDS)
    if after != before:
        audit_record(actor=by, action="patient.updated", obj=patient, before=before, after=after)
    return patient


@transaction.atomic
def case_create(*, patient: Patient, by, clinical_notes: str = "") -> Case:
    require_site_member(by, patient.site)
    case = Case(patient=patient, created_by=by, clinical_notes=clinical_notes)
    case.full_clean()
    case.save()
    audit_record(
        actor=by, action="case.created", obj=case, case=case, after=snapshot(case, CASE_FIELDS)
    )
    return case


@transaction.atomic
def case_update(*, case: Case, by, clinical_notes: str) -> Case:
    case = Case.objects.select_for_update().get(pk=case.pk)
    if case.status == Case.Status.SIGNED_OFF:
        raise ValidationError("A signed-off case is locked.")
    before = snapshot(case, CASE_FIELDS)
    case.clinical_notes = clinical_notes
    case.full_clean()
    case.save(update_fields=["clinical_notes", "updated_at"])
    after = snapshot(case, CASE_FIELDS)
    if after != before:
        audit_record(
            actor=by, action="case.updated", obj=case, case=case, before=before, after=after
        )
    return case


@dataclass
class UploadOutcome:
    stored: list[Image] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "stored": [
                {"id": img.pk, "name": img.original_name, "kind": img.kind} for img in self.stored
            ],
            "duplicates": self.duplicates,
            "rejected": [{"name": r.name, "reason": r.reason} for r in self.rejected],
        }


def _store(case: Case, valid: ValidFile) -> str:
    name = f"cases/{case.pk}/images/{uuid.uuid4().hex}.{valid.extension}"
    return default_storage.save(name, ContentFile(valid.data))


def images_add(
    *, case: Case, files: list[tuple[str, bytes]], by, kind: str = "auto"
) -> UploadOutcome:
    """Validate, store and queue a batch of uploads. Each file stands or falls on its own."""
    require_site_member(by, case.patient.site)
    if case.status == Case.Status.SIGNED_OFF:
        raise ValidationError("A signed-off case is locked; reopen it before adding images.")
    checked = validate_files(files, kind=kind)
    outcome = UploadOutcome(rejected=checked.rejected)
    existing = set(
        case.images.filter(
            parent__isnull=True, sha256__in=[v.sha256 for v in checked.valid]
        ).values_list("sha256", flat=True)
    )
    fresh: list[ValidFile] = []
    for valid in checked.valid:
        if valid.sha256 in existing:
            outcome.duplicates.append(valid.name)
        else:
            existing.add(valid.sha256)
            fresh.append(valid)
    # Storage I/O happens before the transaction, so the database lock is held only briefly.
    paths = [_store(case, valid) for valid in fresh]
    try:
        with transaction.atomic():
            rows = Image.objects.bulk_create(
                [
                    Image(
                        case=case,
                        file=path,
                        original_name=valid.name[:255],
                        kind=valid.kind,
                        sha256=valid.sha256,
                        width=valid.width,
                        height=valid.height,
                        uploaded_by=by,
                    )
                    for valid, path in zip(fresh, paths, strict=True)
                ]
            )
            if rows:
                audit_record(
                    actor=by,
                    action="images.uploaded",
                    obj=case,
                    case=case,
                    after={
                        "count": len(rows),
                        "images": [
                            {"id": r.pk, "name": r.original_name, "sha256": r.sha256} for r in rows
                        ],
                        "duplicates": outcome.duplicates,
                    },
                )
            if outcome.rejected:
                audit_record(
                    actor=by,
                    action="images.rejected",
                    obj=case,
                    case=case,
                    after={
                        "files": [{"name": r.name, "reason": r.reason} for r in outcome.rejected]
                    },
                )
            case_status_refresh(case=case, by=by)
            ids = [r.pk for r in rows]
            if ids:
                transaction.on_commit(lambda: queue.analysis_enqueue(ids))
    except IntegrityError:
        # A concurrent upload of the same file won the race: nothing of ours was committed.
        for path in paths:
            default_storage.delete(path)
        raise
    outcome.stored = rows
    return outcome
