"""Writes: every state change of patients, cases and images, each with its audit event.

Functions are named <noun>_<verb>, take keyword arguments only, validate with full_clean() and
run in one transaction together with their AuditEvent. Analysis tasks are enqueued only after the
transaction commits (transaction.on_commit), with image ids as their only arguments.
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import transaction

from cases.access import require_site_member
from cases.analysis import queue
from cases.analysis.status import case_status_refresh
from cases.audit.trail import audit_record, snapshot
from cases.intake.uploads import Rejected, Skipped, UploadSource, ValidFile, checked_uploads
from cases.models import Case, Image, Patient, Site
from cases.storage import StorageUnavailable, file_delete, stream_store

logger = logging.getLogger(__name__)

PATIENT_FIELDS = ["site", "identifier", "sex", "birth_date", "age_years"]
CASE_FIELDS = ["patient", "clinical_notes", "status"]


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
    skipped: list[Skipped] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "stored": [
                {"id": img.pk, "name": img.original_name, "kind": img.kind} for img in self.stored
            ],
            "duplicates": self.duplicates,
            "rejected": [{"name": r.name, "reason": r.reason} for r in self.rejected],
            "skipped": [{"name": s.name, "reason": s.reason} for s in self.skipped],
        }


@dataclass
class _Staged:
    """A checked file already written to storage, waiting for its row."""

    valid: ValidFile
    path: str


def _store(case: Case, valid: ValidFile) -> str:
    """Stream the file to the path Image.file's upload_to builds (never the uploaded name); a
    storage fault raises StorageUnavailable with nothing of this file left behind."""
    return stream_store(Image(case=case), "file", f"upload.{valid.extension}", valid.content)


def _discard(staged: list[_Staged]) -> None:
    for item in staged:
        file_delete(default_storage, item.path)


def storage_fault_message(exc: StorageUnavailable) -> str:
    """What an uploader reads when storage refused the files (page and API alike)."""
    return (
        f"The files could not be stored ({exc}); nothing from this upload was kept. "
        "Upload them again later."
    )


def _require_open(case: Case) -> None:
    if case.status == Case.Status.SIGNED_OFF:
        raise ValidationError("A signed-off case is locked; reopen it before adding images.")


def _stage_uploads(
    case: Case, files: Iterable[tuple[str, UploadSource]], kind: str
) -> tuple[UploadOutcome, list[_Staged]]:
    """Check every file and store each new one as it comes: one file's content in hand at a
    time, and no database lock held while gigabytes are read."""
    outcome = UploadOutcome()
    seen = set(case.images.filter(parent__isnull=True).values_list("sha256", flat=True))
    staged: list[_Staged] = []
    try:
        for checked in checked_uploads(files, kind):
            if isinstance(checked, Rejected):
                outcome.rejected.append(checked)
            elif isinstance(checked, Skipped):
                outcome.skipped.append(checked)
            elif checked.sha256 in seen:
                outcome.duplicates.append(checked.name)
            else:
                seen.add(checked.sha256)
                staged.append(_Staged(checked, _store(case, checked)))
    except BaseException:
        _discard(staged)
        raise
    return outcome, staged


def _audit_upload(*, case: Case, rows: list[Image], outcome: UploadOutcome, by) -> None:
    if rows:
        audit_record(
            actor=by,
            action="images.uploaded",
            obj=case,
            case=case,
            after={
                "count": len(rows),
                "images": [{"id": r.pk, "name": r.original_name, "sha256": r.sha256} for r in rows],
                "duplicates": outcome.duplicates,
            },
        )
    if outcome.rejected:
        audit_record(
            actor=by,
            action="images.rejected",
            obj=case,
            case=case,
            after={"files": [{"name": r.name, "reason": r.reason} for r in outcome.rejected]},
        )


@transaction.atomic
def _images_record(*, case: Case, staged: list[_Staged], outcome: UploadOutcome, by) -> list[Image]:
    """The rows, audit events and status of a stored batch, under the case's row lock: a
    sign-off that landed while the files were being checked refuses the whole batch."""
    case = Case.objects.select_for_update().get(pk=case.pk)
    if case.status == Case.Status.SIGNED_OFF:
        raise ValidationError(
            "The case was signed off while the upload was being checked; no images were added. "
            "Reopen the case to add images."
        )
    rows = Image.objects.bulk_create(
        [
            Image(
                case=case,
                file=item.path,
                original_name=item.valid.name[:255],
                kind=item.valid.kind,
                sha256=item.valid.sha256,
                width=item.valid.width,
                height=item.valid.height,
                uploaded_by=by,
            )
            for item in staged
        ]
    )
    _audit_upload(case=case, rows=rows, outcome=outcome, by=by)
    case_status_refresh(case=case, by=by)
    ids = [r.pk for r in rows]
    if ids:
        transaction.on_commit(lambda: queue.analysis_enqueue(ids))
    return rows


def images_add(
    *, case: Case, files: Iterable[tuple[str, UploadSource]], by, kind: str = "auto"
) -> UploadOutcome:
    """Validate, store and queue a batch of uploads. Each file stands or falls on its own.

    `files` are (name, content) pairs; content is bytes or an open binary file (an
    UploadedFile): it is streamed, never read whole. Checking and storage I/O happen before the
    transaction; the case is locked, and checked again for a sign-off, only while the rows are
    written. A storage fault (a read-only or full disk) keeps nothing of the request: it raises
    cases.storage.StorageUnavailable, whose text names no path, and the same files can be sent
    again once storage is back.
    """
    require_site_member(by, case.patient.site)
    _require_open(case)  # early: do not check gigabytes of files for a locked case
    outcome, staged = _stage_uploads(case, files, kind)
    try:
        outcome.stored = _images_record(case=case, staged=staged, outcome=outcome, by=by)
    except BaseException:
        # A concurrent upload of the same file won the race, the case was signed off meanwhile,
        # or the database failed: nothing of ours was committed, so no file of it may stay.
        _discard(staged)
        raise
    return outcome
