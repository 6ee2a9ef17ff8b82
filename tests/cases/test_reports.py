"""Case reports: PDF, CSV (one row per image), FHIR R4 JSON, and background exports of large cases."""

import csv
import io
import json

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from cases.models import AuditEvent, ReportExport
from cases.reports import documents as report_documents
from cases.reports import exports as report_exports
from cases.reports import services as reports
from cases.reports.tasks import generate_report_export
from cases.review import services as reviews
from cases.summary import wilson_interval
from tests.cases.review_helpers import add_cells
from tests.conftest import make_user


@pytest.fixture
def ready(case, clinician):
    add_cells(case, clinician, [0.95, 0.05, 0.7, 0.2], files=True, failed=1)
    return case


@pytest.fixture
def signed(ready, reviewer):
    reviews.review_claim(case=ready, by=reviewer)
    for image in ready.images.filter(prediction__isnull=False).order_by("id"):
        if image.prediction.probability == 0.7:
            reviews.review_submit(
                image=image,
                by=reviewer,
                decision="override",
                label="uninfected",
                reason_code="platelet_overlap",
                reason_text="Platelet over the cell",
            )
        else:
            reviews.review_submit(image=image, by=reviewer, decision="confirm")
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
