"""Case reports by kind: PDF (cases.reports.pdf), CSV (cases.reports.table) and FHIR R4 JSON
(cases.reports.fhir), with their content types and download file names.

A report claims only what happened. Before sign-off the PDF is titled and watermarked PRELIMINARY
(AI only, not reviewed), lists what is still pending and makes no review statement; after
sign-off it names the reviewer and the time and lists every override with its reason. Every
count comes from cases.summary.case_summary (through ReviewCounts), as on the pages; the shared
data and wording live in cases.reports.content.

Small cases render in the request; a case with more than REPORT_DIRECT_MAX_IMAGES images is
rendered by a worker (cases.reports.tasks) into a ReportExport the page offers when ready. A
reopen keeps the signed report as a ReportExport marked superseded (report_keep_superseded).
"""

from urllib.parse import quote

from django.conf import settings
from django.core.files.storage import default_storage
from django.http import FileResponse, HttpResponse

from cases.models import Case, ReportExport
from cases.reports.fhir import case_report_fhir, case_report_fhir_bytes
from cases.reports.pdf import case_report_pdf
from cases.reports.table import case_report_csv

__all__ = [
    "CONTENT_TYPES",
    "EXTENSIONS",
    "REPORT_DIRECT_MAX_IMAGES",
    "case_report_csv",
    "case_report_fhir",
    "case_report_fhir_bytes",
    "case_report_pdf",
    "attachment_header",
    "export_response",
    "is_large",
    "no_store",
    "report_filename",
    "report_render",
]

REPORT_DIRECT_MAX_IMAGES = getattr(settings, "REPORT_DIRECT_MAX_IMAGES", 200)
# Stored exports carry their kind of report in the file name: no extra column is needed to tell
# a signed report (which a later reopen supersedes) from a preliminary one.
FINAL_PREFIX, PRELIMINARY_PREFIX = "final-", "preliminary-"
CONTENT_TYPES = {
    ReportExport.Kind.PDF: "application/pdf",
    ReportExport.Kind.CSV: "text/csv; charset=utf-8",
    ReportExport.Kind.FHIR: "application/fhir+json",
}
EXTENSIONS = {
    ReportExport.Kind.PDF: "pdf",
    ReportExport.Kind.CSV: "csv",
    ReportExport.Kind.FHIR: "json",
}


def is_large(case: Case) -> bool:
    return case.images.count() > REPORT_DIRECT_MAX_IMAGES


def _filename_part(text: str) -> str:
    """Letters, digits, '.', '-' and '_' kept, anything else '_': nothing a header could parse."""
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in text)


def report_filename(case: Case, kind: str) -> str:
    """case-<id>-<identifier>-report.<ext>; quotes, ';', '/', control characters become '_'."""
    identifier = _filename_part(case.patient.identifier)
    return f"case-{case.pk}-{identifier}-report.{EXTENSIONS[kind]}"


def attachment_header(filename: str) -> str:
    """Content-Disposition for a download (RFC 6266): an ASCII `filename` every client reads,
    plus `filename*` (RFC 5987, UTF-8) when the name has other letters, e.g. an identifier in
    another script."""
    filename = _filename_part(filename)
    ascii_name = "".join(ch if ch.isascii() else "_" for ch in filename)
    header = f'attachment; filename="{ascii_name}"'
    if ascii_name != filename:
        header += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return header


def no_store(response: HttpResponse) -> HttpResponse:
    """Reports carry patient data: no shared cache keeps them, and no browser cache either."""
    response["Cache-Control"] = "private, no-store"
    return response


def export_response(export: ReportExport) -> FileResponse:
    """A finished stored export as a download: its content type, a safe name, never cached."""
    response = FileResponse(
        default_storage.open(export.file.name, "rb"), content_type=CONTENT_TYPES[export.kind]
    )
    filename = report_filename(export.case, export.kind)
    response["Content-Disposition"] = attachment_header(filename)
    return no_store(response)


def report_render(case: Case, kind: str) -> bytes:
    if kind == ReportExport.Kind.PDF:
        return case_report_pdf(case)
    if kind == ReportExport.Kind.CSV:
        return case_report_csv(case)
    if kind == ReportExport.Kind.FHIR:
        return case_report_fhir_bytes(case)
    raise ValueError(f"unknown report kind {kind!r}")
