"""Case reports: PDF, CSV (one row per image), FHIR R4 JSON, and background exports of large cases."""

import csv
import io
import json
import tempfile

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from PIL import Image as PILImage
from rest_framework.test import APIClient

from cases.intake import services as intake
from cases.models import AuditEvent, Patient, ReportExport
from cases.reports import documents as report_documents
from cases.reports import exports as report_exports
from cases.reports import pdf as report_pdf
from cases.reports import services as reports
from cases.reports import table as report_table
from cases.reports.tasks import generate_report_export
from cases.review import services as reviews
from cases.summary import wilson_interval
from tests.cases.count_helpers import pdf_text
from tests.cases.review_helpers import add_cells, decide_cells
from tests.conftest import make_user


@pytest.fixture
def ready(case, clinician):
    add_cells(case, clinician, [0.95, 0.05, 0.7, 0.2], files=True, failed=1)
    return case


@pytest.fixture
def signed(ready, reviewer):
    reviews.review_claim(case=ready, by=reviewer)
    decide_cells(
        ready,
        reviewer,
        override=lambda image: image.prediction.probability == 0.7,
        reason_code="platelet_overlap",
        reason_text="Platelet over the cell",
    )
    return reviews.case_sign_off(case=ready, by=reviewer, diagnosis="positive", note="Rings")


def test_the_pdf_is_a_pdf_naming_the_patient(signed):
    pdf = report_documents.case_report_pdf(signed, compress=False)
    assert pdf.startswith(b"%PDF")
    assert len(pdf) > 5000
    assert b"P-001" in pdf
    assert b"stand-alone diagnosis" in pdf
    assert b"review-v1" in pdf  # the model version
    # 4 originals + the overlays (the test overlays are identical, so reportlab stores one).
    assert pdf.count(b"/Subtype /Image") == 5


def test_the_pdf_of_an_unsigned_case_says_preliminary(ready):
    pdf = report_documents.case_report_pdf(ready, compress=False)
    assert b"PRELIMINARY" in pdf


def test_the_pdf_download(client, signed, clinician):
    client.force_login(clinician)
    response = client.get(reverse("review_report_pdf", args=[signed.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF")
    assert f"case-{signed.pk}-P-001-report.pdf" in response["Content-Disposition"]


def test_the_csv_has_one_row_per_image(client, signed, clinician):
    client.force_login(clinician)
    response = client.get(reverse("review_report_csv", args=[signed.pk]))
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == signed.images.count() == 5
    assert rows[0]["patient_identifier"] == "P-001"
    overridden = [r for r in rows if r["review_decision"] == "override"]
    assert len(overridden) == 1
    assert overridden[0]["ai_label"] == "parasitized"
    assert overridden[0]["final_label"] == "uninfected"
    assert overridden[0]["reason_code"] == "platelet_overlap"
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["ai_probability"] == ""


def test_the_fhir_export_is_a_final_diagnostic_report(client, signed, clinician, reviewer):
    client.force_login(clinician)
    response = client.get(reverse("review_report_fhir", args=[signed.pk]))
    assert response["Content-Type"] == "application/fhir+json"
    report = json.loads(response.content)
    assert report["resourceType"] == "DiagnosticReport"
    assert report["status"] == "final"
    assert report["subject"]["identifier"]["value"] == "P-001"
    assert report["performer"][0]["identifier"]["value"] == reviewer.username
    contained = {obs["id"]: obs for obs in report["contained"]}
    assert {ref["reference"] for ref in report["result"]} == {f"#{i}" for i in contained}
    assert all(obs["resourceType"] == "Observation" for obs in contained.values())
    assert all(obs["status"] == "final" for obs in contained.values())
    parasitemia = contained["parasitemia"]
    assert parasitemia["valueQuantity"]["value"] == pytest.approx(25.0)  # 1 of 4 reviewed cells
    assert parasitemia["valueQuantity"]["code"] == "%"
    low, high = wilson_interval(1, 4)
    bounds = [c["valueQuantity"]["value"] for c in parasitemia["component"]]
    assert bounds == [pytest.approx(100 * low, abs=1e-4), pytest.approx(100 * high, abs=1e-4)]
    assert "coding" not in parasitemia["code"]  # text-coded: no invented codes
    assert contained["cells-reviewed"]["valueQuantity"]["value"] == 4
    assert contained["cells-parasitized"]["valueQuantity"]["value"] == 1
    assert contained["cells-parasitized-ai"]["valueQuantity"]["value"] == 2
    assert contained["presence"]["code"]["coding"][0]["code"] == "51587-4"
    assert contained["presence"]["valueCodeableConcept"]["text"] == "Detected"
    assert "not a stand-alone diagnosis" in report["conclusion"]


def test_fhir_needs_a_signed_case(client, ready, clinician):
    with pytest.raises(ValidationError):
        report_documents.case_report_fhir(ready)
    client.force_login(clinician)
    response = client.get(reverse("review_report_fhir", args=[ready.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("review_exports", args=[ready.pk])


def test_reports_are_404_for_another_site(client, signed, outsider):
    client.force_login(outsider)
    for name in ("review_report_pdf", "review_report_csv", "review_report_fhir", "review_exports"):
        assert client.get(reverse(name, args=[signed.pk])).status_code == 404


# --- Large cases: rendered by a worker ------------------------------------------------------


@pytest.fixture
def large(monkeypatch):
    monkeypatch.setattr(report_documents, "REPORT_DIRECT_MAX_IMAGES", 3)


def test_a_large_case_is_exported_in_the_background(
    client, signed, clinician, large, django_capture_on_commit_callbacks
):
    client.force_login(clinician)
    response = client.get(reverse("review_report_pdf", args=[signed.pk]))
    assert response["Location"] == reverse("review_exports", args=[signed.pk])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        client.post(reverse("review_exports", args=[signed.pk]), {"kind": "csv"})
    assert len(callbacks) == 1
    export = ReportExport.objects.get()
    assert (export.kind, export.status, export.created_by) == ("csv", "pending", clinician)
    # The worker's side, run in-process (JSON argument: the export id).
    result = generate_report_export.apply(args=[export.pk]).get()
    assert result == {"export": export.pk, "status": "done"}
    export.refresh_from_db()
    assert export.file.name.endswith(".csv")
    page = client.get(reverse("review_exports", args=[signed.pk])).content.decode()
    assert reverse("review_export_download", args=[export.pk]) in page
    download = client.get(reverse("review_export_download", args=[export.pk]))
    rows = list(csv.DictReader(io.StringIO(b"".join(download.streaming_content).decode())))
    assert len(rows) == 5
    actions = list(AuditEvent.objects.filter(action__startswith="report.").values_list("action"))
    assert actions == [("report.requested",), ("report.generated",)]


def test_an_export_task_run_twice_does_nothing_twice(signed, clinician):
    export = reports.report_export_request(case=signed, kind="pdf", by=clinician)
    first = report_exports.report_export_generate(export_id=export.pk)
    second = report_exports.report_export_generate(export_id=export.pk)
    assert first.file.name == second.file.name
    assert AuditEvent.objects.filter(action="report.generated").count() == 1


def test_a_pending_export_is_reused(signed, clinician):
    one = reports.report_export_request(case=signed, kind="pdf", by=clinician)
    two = reports.report_export_request(case=signed, kind="pdf", by=clinician)
    assert one.pk == two.pk


def test_a_failed_render_marks_the_export_failed(signed, clinician, monkeypatch):
    export = reports.report_export_request(case=signed, kind="pdf", by=clinician)
    monkeypatch.setattr(report_exports, "report_render", lambda case, kind: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        generate_report_export.apply(args=[export.pk], throw=True)
    export.refresh_from_db()
    assert export.status == "failed" and "ZeroDivisionError" in export.error


def test_an_export_of_another_site_is_404(client, signed, clinician, other_site):
    export = reports.report_export_request(case=signed, kind="csv", by=clinician)
    report_exports.report_export_generate(export_id=export.pk)
    client.force_login(make_user("o", "clinician", [other_site]))
    assert client.get(reverse("review_export_download", args=[export.pk])).status_code == 404


# --- Hostile identifiers: escaped in the PDF, refused with line breaks, safe in headers --------


def _rename(case, identifier: str, by):
    intake.patient_update(patient=case.patient, by=by, identifier=identifier)
    case.refresh_from_db()
    return case


@pytest.mark.parametrize("identifier", ["<font name=y>", "</para><b>x", "a & b <i>"])
def test_pdf_markup_in_an_identifier_is_printed_as_text(client, ready, clinician, identifier):
    _rename(ready, identifier, clinician)
    client.force_login(clinician)
    response = client.get(reverse("review_report_pdf", args=[ready.pk]))
    assert response.status_code == 200
    text = pdf_text(report_documents.case_report_pdf(ready, compress=False))
    assert identifier in text


def test_an_img_tag_in_an_identifier_embeds_no_server_file(ready, clinician):
    plain = report_documents.case_report_pdf(ready, compress=False)
    # A short path: the identifier holds 64 characters at most.
    with tempfile.NamedTemporaryFile(suffix=".png", dir="/tmp") as server_file:
        PILImage.new("RGB", (40, 40), (250, 0, 0)).save(server_file, format="PNG")
        server_file.flush()
        _rename(ready, f'<img src="{server_file.name}"/>', clinician)
        pdf = report_documents.case_report_pdf(ready, compress=False)
    assert pdf.count(b"/Subtype /Image") == plain.count(b"/Subtype /Image")
    assert server_file.name in pdf_text(pdf)


def test_every_pdf_paragraph_value_is_escaped():
    assert report_pdf.markup("<b>{a}</b> {b}", a="<img src='/x'/>", b="&") == (
        "<b>&lt;img src=&#x27;/x&#x27;/&gt;</b> &amp;"
    )


@pytest.mark.parametrize("identifier", ["P-1\r\nX", "P-1\nX", "P-1\rX", "P\x00-1", "P\u2028-1"])
def test_the_patient_form_refuses_line_breaks_and_control_characters(
    client, site, clinician, identifier
):
    client.force_login(clinician)
    response = client.post(
        reverse("patient_create"), {"site": site.pk, "identifier": identifier, "sex": "U"}
    )
    assert response.status_code == 200
    assert "one line only" in response.content.decode()
    assert not Patient.objects.filter(identifier__startswith="P").exclude(identifier="P-001")


@pytest.mark.parametrize("identifier", ["P-1\r\nX", "P-1\tX", "P\u200b-1"])
def test_the_api_refuses_line_breaks_and_control_characters(site, clinician, identifier):
    api = APIClient()
    api.force_authenticate(clinician)
    response = api.post(reverse("api_patient_list"), {"site": site.pk, "identifier": identifier})
    assert response.status_code == 400
    assert "one line only" in json.dumps(response.json())
    assert not Patient.objects.exclude(identifier="P-001").exists()


def test_the_service_refuses_a_line_break_whatever_calls_it(site, clinician):
    with pytest.raises(ValidationError):
        intake.patient_create(site=site, identifier="P-9\nX", by=clinician)


EVIL = "x\";filename*=UTF-8''evil.html"


def _disposition_is_safe(header: str, pk: int) -> None:
    assert header == f'attachment; filename="case-{pk}-x__filename__UTF-8__evil.html-report.pdf"'
    assert "filename*" not in header and header.count('"') == 2


def test_a_download_name_cannot_inject_header_parameters(client, signed, clinician):
    _rename(signed, EVIL, clinician)
    client.force_login(clinician)
    response = client.get(reverse("review_report_pdf", args=[signed.pk]))
    _disposition_is_safe(response["Content-Disposition"], signed.pk)
    export = reports.report_export_request(case=signed, kind="pdf", by=clinician)
    report_exports.report_export_generate(export_id=export.pk)
    stored = client.get(reverse("review_export_download", args=[export.pk]))
    _disposition_is_safe(stored["Content-Disposition"], signed.pk)


def test_a_non_ascii_identifier_gets_an_ascii_name_and_an_rfc_6266_one(client, ready, clinician):
    _rename(ready, "Ñandú 7", clinician)
    client.force_login(clinician)
    header = client.get(reverse("review_report_csv", args=[ready.pk]))["Content-Disposition"]
    assert header == (
        f'attachment; filename="case-{ready.pk}-_and__7-report.csv"; '
        f"filename*=UTF-8''case-{ready.pk}-%C3%91and%C3%BA_7-report.csv"
    )


@pytest.mark.parametrize("identifier", ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)"])
def test_csv_cells_a_spreadsheet_would_run_are_neutralised(
    client, ready, clinician, reviewer, identifier
):
    _rename(ready, identifier, clinician)
    reviews.review_claim(case=ready, by=reviewer)
    image = ready.images.filter(prediction__probability=0.7).get()
    reviews.review_submit(
        image=image,
        by=reviewer,
        decision="override",
        label="uninfected",
        reason_code="other",
        reason_text="=cmd|'/c calc'!A1",
    )
    client.force_login(clinician)
    response = client.get(reverse("review_report_csv", args=[ready.pk]))
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert {row["patient_identifier"] for row in rows} == {"'" + identifier}
    assert [r["reason_text"] for r in rows if r["reason_text"]] == ["'=cmd|'/c calc'!A1"]
    assert rows[0]["ai_probability"] == "0.9500"  # plain values untouched


def test_the_csv_neutraliser_prefixes_tab_and_cr_too():
    assert [report_table.csv_safe(v) for v in ["\tx", "\rx", "a=b", 3, ""]] == [
        "'\tx",
        "'\rx",
        "a=b",
        3,
        "",
    ]


def test_reports_and_exports_are_not_cached(client, signed, clinician):
    client.force_login(clinician)
    for name in ("review_report_pdf", "review_report_csv", "review_report_fhir"):
        response = client.get(reverse(name, args=[signed.pk]))
        assert response["Cache-Control"] == "private, no-store", name
    export = reports.report_export_request(case=signed, kind="fhir", by=clinician)
    report_exports.report_export_generate(export_id=export.pk)
    stored = client.get(reverse("review_export_download", args=[export.pk]))
    assert stored["Cache-Control"] == "private, no-store"


def test_the_api_report_and_export_downloads_are_safe_and_not_cached(signed, clinician):
    _rename(signed, EVIL, clinician)
    api = APIClient()
    api.force_authenticate(clinician)
    response = api.get(reverse("api-v1-case-report", args=[signed.pk, "pdf"]))
    assert response.status_code == 200
    _disposition_is_safe(response["Content-Disposition"], signed.pk)
    assert response["Cache-Control"] == "private, no-store"
    export = reports.report_export_request(case=signed, kind="pdf", by=clinician)
    report_exports.report_export_generate(export_id=export.pk)
    stored = api.get(reverse("api-v1-export-file", args=[export.pk]))
    _disposition_is_safe(stored["Content-Disposition"], signed.pk)
    assert stored["Cache-Control"] == "private, no-store"
