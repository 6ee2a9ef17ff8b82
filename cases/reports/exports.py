"""Stored report files (ReportExport): rendered by a worker, kept when a reopen supersedes them."""

import posixpath

from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from cases.audit.trail import audit_record
from cases.models import Case, ReportExport
from cases.reports.content import Superseded, person, when
from cases.reports.documents import EXTENSIONS, FINAL_PREFIX, PRELIMINARY_PREFIX, report_render
from cases.reports.pdf import case_report_pdf
from cases.storage import file_store


def export_state(export: ReportExport) -> dict:
    return {"kind": export.kind, "status": export.status, "file": export.file.name or ""}


def _export_store(case: Case, kind: str, content: bytes) -> str:
    """Store a rendered report where ReportExport's upload_to puts it (final-… or preliminary-…)."""
    prefix = FINAL_PREFIX if case.status == Case.Status.SIGNED_OFF else PRELIMINARY_PREFIX
    name = f"{prefix.rstrip('-')}.{EXTENSIONS[kind]}"
    return file_store(ReportExport(case=case), "file", name, content)


def export_is_final(export: ReportExport) -> bool:
    """Whether a stored export was rendered while its case was signed off."""
    return posixpath.basename(export.file.name or "").startswith(FINAL_PREFIX)


def export_is_superseded(export: ReportExport, case: Case) -> bool:
    """A signed report rendered before the case's latest reopen: kept, but no longer standing."""
    return (
        export_is_final(export)
        and case.reopened_at is not None
        and export.finished_at is not None
        and export.finished_at <= case.reopened_at
    )


def export_state_label(export: ReportExport, case: Case) -> str:
    """The words beside a stored export on the exports page."""
    if export.status != ReportExport.Status.DONE:
        return export.get_status_display()
    if export_is_superseded(export, case):
        return "Signed report, superseded by the reopen"
    if export_is_final(export):
        return "Final (signed off)"
    return "Preliminary (not signed off)"


def report_keep_superseded(*, case: Case, by, reason: str) -> ReportExport:
    """Store the signed PDF of a case about to be reopened, stamped superseded (reopen only).

    Called by cases.review.services.case_reopen with the case row locked and still signed off, so the
    report shows exactly what was signed. It renders inside that transaction on purpose: a
    reopen is a rare admin action, and a report rendered after the commit could no longer show
    the signed state.
    """
    if case.status != Case.Status.SIGNED_OFF:
        raise ValidationError("Only a signed-off case has a signed report to keep.")
    now = timezone.now()
    stamp = Superseded(by=person(by), at=now, reason=reason)
    content = case_report_pdf(case, superseded=stamp)
    stored = _export_store(case, ReportExport.Kind.PDF, content)
    export = ReportExport(
        case=case,
        kind=ReportExport.Kind.PDF,
        status=ReportExport.Status.DONE,
        file=stored,
        created_by=by,
        finished_at=now,
    )
    export.full_clean()
    export.save()
    audit_record(
        actor=by,
        action="report.superseded_kept",
        obj=export,
        case=case,
        after={
            **export_state(export),
            "bytes": len(content),
            "signed_off_at": when(case.signed_off_at),
        },
    )
    return export


def report_export_generate(*, export_id: int) -> ReportExport:
    """Render an export and store its file (worker side). Idempotent: a done export is kept."""
    export = ReportExport.objects.select_related("case").get(pk=export_id)
    if export.status == ReportExport.Status.DONE:
        return export
    ReportExport.objects.filter(pk=export_id, status=ReportExport.Status.PENDING).update(
        status=ReportExport.Status.RUNNING
    )
    content = report_render(export.case, export.kind)
    # Storage I/O before the transaction: the database lock is held only to record the result.
    stored = _export_store(export.case, export.kind, content)
    with transaction.atomic():
        export = ReportExport.objects.select_for_update().get(pk=export_id)
        if export.status == ReportExport.Status.DONE:
            default_storage.delete(stored)  # a concurrent run finished first
            return export
        before = export_state(export)
        export.status = ReportExport.Status.DONE
        export.file = stored
        export.error = ""
        export.finished_at = timezone.now()
        export.save(update_fields=["status", "file", "error", "finished_at"])
        audit_record(
            actor=None,
            action="report.generated",
            obj=export,
            case=export.case,
            before=before,
            after={**export_state(export), "bytes": len(content)},
        )
    return export


@transaction.atomic
def report_export_mark_failed(*, export_id: int, reason: str) -> ReportExport:
    export = ReportExport.objects.select_for_update().select_related("case").get(pk=export_id)
    if export.status == ReportExport.Status.DONE:
        return export
    before = export_state(export)
    export.status = ReportExport.Status.FAILED
    export.error = reason[:2000]
    export.finished_at = timezone.now()
    export.save(update_fields=["status", "error", "finished_at"])
    audit_record(
        actor=None,
        action="report.failed",
        obj=export,
        case=export.case,
        before=before,
        after={**export_state(export), "error": export.error},
    )
    return export
