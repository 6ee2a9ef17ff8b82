"""One count everywhere: the same case fed to every page, report and API response.

The case (tests/cases/count_helpers.py) has a quality-flagged parasitized call, a near-threshold
cell, a failed upload and a field photograph with a detected cell cut by its edge: each of them
once made two places disagree. Every number below must be case_summary's.
"""

import csv
import io
import json
import re

import pytest
from django.urls import reverse

from cases.models import Image
from cases.reports import documents as report_documents
from cases.review import services as reviews
from cases.review.selectors import case_review_counts
from cases.summary import case_summary, wilson_interval
from tests.cases.count_helpers import EXPECTED, mixed_case, pdf_text


@pytest.fixture
def mixed(case, clinician):
    return mixed_case(case, clinician)


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def _cell(html: str, role: str) -> str:
    match = re.search(rf'data-role="{role}"[^>]*>(.*?)</dd>', html, re.S)
    return _text(match.group(1))


def _row(html: str, row: str) -> list[str]:
    match = re.search(rf'<tr data-row="{row}">(.*?)</tr>', html, re.S)
    return [_text(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", match.group(1), re.S)]


def test_the_summary_counts_the_case_once(mixed, settings):
    summary = case_summary(mixed.images.select_related("prediction"), margin=0.15)
    for key, value in EXPECTED.items():
        assert summary[key] == value, key
    assert summary["parasitized"] + summary["uninfected"] == summary["counted"]
    assert summary["ci95"] == pytest.approx(list(wilson_interval(4, 9)))


def test_the_review_table_takes_the_summarys_numbers(mixed):
    counts = case_review_counts(mixed)
    assert counts.cells == EXPECTED["predicted"]
    assert counts.ai_counted == EXPECTED["counted"]
    assert counts.ai_parasitized == EXPECTED["parasitized"]  # not 5: the flagged one is out
    assert counts.ai_uninfected == EXPECTED["uninfected"]
    assert counts.ai_quality_flagged == EXPECTED["quality_flagged"]
    assert counts.ai_near_threshold == EXPECTED["near_threshold"]
    assert counts.ai_parasitemia == pytest.approx(100 * 4 / 9)
    assert counts.field_photographs == 1


def test_pages_api_and_reports_state_the_same_counts(client, mixed, clinician, reviewer):
    client.force_login(clinician)
    page = client.get(reverse("case_detail", args=[mixed.pk])).content.decode()
    # The AI summary card and the AI/reviewer table, side by side on one page.
    assert _cell(page, "parasitized") == "4"
    assert _cell(page, "uninfected") == "5"
    assert _cell(page, "counted") == "9 of 10 cells with a result"
    assert _cell(page, "flagged") == "1"
    assert _cell(page, "fraction") == "44.44 %"
    assert _row(page, "parasitized")[1] == "4"
    assert _row(page, "uninfected")[1] == "5"
    assert _row(page, "counted")[1] == "9 quality-passed"
    assert _row(page, "flagged")[1] == "1"
    assert _row(page, "cells")[1] == "10 cells"
    assert _row(page, "parasitemia")[1].startswith("44.44%")

    status = client.get(reverse("case_status", args=[mixed.pk])).json()["summary"]
    api = client.get(f"/api/cases/{mixed.pk}/").json()["summary"]
    for key, value in EXPECTED.items():
        assert status[key] == api[key] == value, key

    rows = list(csv.DictReader(io.StringIO(report_documents.case_report_csv(mixed).decode())))
    counted = [r for r in rows if r["counted"] == "true"]
    assert len(counted) == 9
    assert sum(r["ai_label"] == "parasitized" for r in counted) == 4
    assert [r["on_border"] for r in rows].count("true") == 1

    text = pdf_text(report_documents.case_report_pdf(mixed, compress=False))
    assert "Counted 9 quality-passed" in text
    assert "Parasitized 4 0" in text  # AI 4, reviewer 0 so far
    assert "Uninfected 5 0" in text
    assert "Quality-flagged (not counted by the AI) 1" in text
    assert "44.44% (" in text

    # Signed: the reviewer's numbers in the PDF, FHIR and API are the sign-off's.
    reviews.review_claim(case=mixed, by=reviewer)
    reviews.review_confirm_remaining(case=mixed, by=reviewer)
    for image in mixed.images.filter(prediction__isnull=False, on_border=False):
        if not image.reviews.exists():
            reviews.review_submit(image=image, by=reviewer, decision="confirm")
    signed = reviews.case_sign_off(case=mixed, by=reviewer, diagnosis="positive")
    counts = case_review_counts(signed)
    assert counts.reviewed == 10 and counts.reviewer_parasitized == 5  # the flagged one too
    fhir = {o["id"]: o for o in report_documents.case_report_fhir(signed)["contained"]}
    assert fhir["cells-counted-ai"]["valueQuantity"]["value"] == 9
    assert fhir["cells-parasitized-ai"]["valueQuantity"]["value"] == 4
    assert fhir["cells-reviewed"]["valueQuantity"]["value"] == 10
    assert fhir["cells-parasitized"]["valueQuantity"]["value"] == 5
    api = client.get(f"/api/cases/{signed.pk}/").json()
    assert (api["final_positive_cells"], api["final_reviewed_cells"]) == (5, 10)
    assert api["final_parasitemia"] == pytest.approx(50.0)
    assert api["summary"]["parasitized"] == 4
    text = pdf_text(report_documents.case_report_pdf(signed, compress=False))
    assert "Parasitized 4 5" in text and "Counted 9 quality-passed 10 reviewed" in text
    assert "50.00% (" in text
    page = client.get(reverse("case_detail", args=[signed.pk])).content.decode()
    assert _row(page, "parasitized")[1:] == ["4", "5"]
    assert json.loads(report_documents.case_report_fhir_bytes(signed))["status"] == "final"


def test_a_cell_cut_by_the_fields_edge_is_neither_counted_nor_reviewed(mixed, reviewer):
    border = Image.objects.get(case=mixed, on_border=True)
    reviews.review_claim(case=mixed, by=reviewer)
    with pytest.raises(Exception, match="no model result to review"):
        reviews.review_submit(image=border, by=reviewer, decision="confirm")
    assert case_review_counts(mixed).unreviewed == 10
