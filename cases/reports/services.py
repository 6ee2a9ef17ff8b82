"""Requests for reports of large cases: a ReportExport row, then a message to a worker."""

from django.core.exceptions import ValidationError
from django.db import transaction

from cases.audit.trail import audit_record
from cases.models import Case, ReportExport
from cases.reports.exports import export_state
from cases.reports.tasks import generate_report_export


@transaction.atomic
def report_export_request(*, case: Case, kind: str, by) -> ReportExport:
    """Queue a report of a large case; a pending one of the same kind is reused."""
    if kind not in ReportExport.Kind.values:
        raise ValidationError({"kind": "Unknown report kind."})
    if kind == ReportExport.Kind.FHIR and case.status != Case.Status.SIGNED_OFF:
        raise ValidationError("Only a signed-off case can be exported as a final FHIR report.")
    Case.objects.select_for_update().filter(pk=case.pk).first()
    running = ReportExport.objects.filter(
        case=case,
        kind=kind,
        status__in=[ReportExport.Status.PENDING, ReportExport.Status.RUNNING],
    ).first()
    if running is not None:
        return running
    export = ReportExport(case=case, kind=kind, created_by=by)
    export.full_clean()
    export.save()
    audit_record(
        actor=by, action="report.requested", obj=export, case=case, after=export_state(export)
    )
    transaction.on_commit(lambda: _enqueue(export.pk))
    return export


def _enqueue(export_id: int) -> None:
    generate_report_export.delay(export_id)
