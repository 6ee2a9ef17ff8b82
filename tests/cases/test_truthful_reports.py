"""Reports and pages claim only what happened: preliminary vs final PDF, overrides with their
reasons, superseded signed reports after a reopen, a headline that follows the case's state,
and a bulk confirmation that states what it stamps."""

import re

import pytest
from django.urls import reverse

from cases.models import AuditEvent, Case, ReportExport, Review
from cases.reports import content as report_content
from cases.reports import documents as report_documents
from cases.reports import exports as report_exports
from cases.reports import services as reports
from cases.review import services as reviews
from tests.cases.count_helpers import pdf_text
from tests.cases.review_helpers import add_cells, decide_cells


@pytest.fixture
def ready(case, clinician):
    # 0.95 and 0.9 clear positives, 0.55 near the threshold, 0.05 clear negative, 0.99 flagged.
    add_cells(
        case,
        clinician,
        [0.95, 0.9, 0.55, 0.05, 0.99],
        quality_ok=[True, True, True, True, False],
        files=True,
    )
    return case


@pytest.fixture
def claimed(ready, reviewer):
    return reviews.review_claim(case=ready, by=reviewer)


def _decide_all(case, reviewer):
    decide_cells(
        case,
        reviewer,
        override=lambda image: image.prediction.probability == 0.9,
        reason_code="stain_debris",
        reason_text="Granule of stain over the membrane",
    )


@pytest.fixture
def signed(claimed, reviewer):
    _decide_all(claimed, reviewer)
    return reviews.case_sign_off(case=claimed, by=reviewer, diagnosis="positive", note="Rings")


# --- Preliminary and final PDF --------------------------------------------------------------


def test_an_unreviewed_pdf_is_preliminary_and_makes_no_review_statement(ready):
    text = pdf_text(report_documents.case_report_pdf(ready, compress=False))
    assert "PRELIMINARY report (AI only, not reviewed)" in text
    assert "PRELIMINARY" in text.split("page 1")[-1] or text.count("PRELIMINARY") >= 3
    assert "whose decision is final" not in text
    assert "was reviewed" not in text
    assert "Still pending: 5 of 5 cells not reviewed; no reviewer has claimed the case" in text
    assert "sign-off with a final diagnosis" in text
    assert "()" not in text  # no empty reviewer parasitemia
    assert "Final diagnosis none: not signed off" in text


def test_a_partly_reviewed_pdf_is_still_preliminary_and_says_what_is_left(claimed, reviewer):
    image = claimed.images.order_by("id").first()
    reviews.review_submit(image=image, by=reviewer, decision="confirm")
    text = pdf_text(report_documents.case_report_pdf(claimed, compress=False))
    assert "PRELIMINARY" in text and "whose decision is final" not in text
    assert "4 of 5 cells not reviewed" in text
    assert "Reviewer so far (1 of 5)" in text
    assert "(claimed" in text and "not signed off" in text


def test_the_final_pdf_names_the_reviewer_the_time_and_every_override_reason(signed, reviewer):
    text = pdf_text(report_documents.case_report_pdf(signed, compress=False))
    assert "PRELIMINARY" not in text and "Still pending" not in text
    when = report_content.when(signed.signed_off_at)
    assert f"signed off by {reviewer.username} on {when}, whose decision is final" in text
    assert f"Signed off by {reviewer.username} Signed off at {when}" in text
    assert "Overrides (1)" in text
    assert "Stain debris Granule of stain over the membrane" in text
    assert "final report" in text  # the footer


# --- Superseded reports after a reopen ------------------------------------------------------


def test_a_reopen_keeps_the_signed_report_downloadable_and_marked_superseded(
    client, signed, lab_admin, clinician
):
    reviews.case_reopen(case=signed, by=lab_admin, reason="Wrong patient label on slide")
    kept = ReportExport.objects.get(case=signed)
    assert (kept.kind, kept.status) == ("pdf", "done")
    case = Case.objects.get(pk=signed.pk)
    assert report_exports.export_is_final(kept) and report_exports.export_is_superseded(kept, case)
    event = AuditEvent.objects.get(action="case.reopened")
    assert event.after["superseded_report"] == kept.pk

    client.force_login(clinician)
    page = client.get(reverse("review_exports", args=[case.pk])).content.decode()
    assert "Signed report, superseded by the reopen" in page
    download = client.get(reverse("review_export_download", args=[kept.pk]))
    text = pdf_text(b"".join(download.streaming_content))
    assert "SUPERSEDED: this signed report no longer stands" in text
    assert "Wrong patient label on slide" in text
    assert "whose decision is final" in text  # what was signed, as it was signed
    # The live report is preliminary again.
    live = pdf_text(client.get(reverse("review_report_pdf", args=[case.pk])).content)
    assert "PRELIMINARY" in live


def test_an_export_made_while_signed_is_superseded_by_a_later_reopen(signed, clinician, lab_admin):
    export = reports.report_export_request(case=signed, kind="csv", by=clinician)
    export = report_exports.report_export_generate(export_id=export.pk)
    assert report_exports.export_state_label(export, signed) == "Final (signed off)"
    reviews.case_reopen(case=signed, by=lab_admin, reason="Recount")
    case = Case.objects.get(pk=signed.pk)
    assert report_exports.export_is_superseded(export, case)
    again = reports.report_export_request(case=case, kind="csv", by=clinician)
    again = report_exports.report_export_generate(export_id=again.pk)
    assert report_exports.export_state_label(again, case) == "Preliminary (not signed off)"


# --- The headline ---------------------------------------------------------------------------


def _headline(client, case) -> str:
    page = client.get(reverse("case_detail", args=[case.pk])).content.decode()
    match = re.search(r'id="case-headline"[^>]*>(.*?)</p>', page, re.S)
    return " ".join(match.group(1).split())


def test_the_headline_follows_the_cases_state(client, ready, reviewer, lab_admin, clinician):
    client.force_login(clinician)
    assert _headline(client, ready).startswith("AI suggests positive: awaiting review")
    reviews.review_claim(case=ready, by=reviewer)
    _decide_all(ready, reviewer)
    signed = reviews.case_sign_off(case=ready, by=reviewer, diagnosis="positive")
    headline = _headline(client, signed)
    assert headline.startswith(f"Final diagnosis: Positive, signed off by {reviewer.username}")
    assert "3 of 5 reviewed cells" in headline
    status = client.get(reverse("case_status", args=[signed.pk])).json()
    assert status["headline"]["state"] == "final"
    assert status["summary"]["call_label"] == "Before review, the AI suggested positive"
    page = client.get(reverse("case_detail", args=[signed.pk])).content.decode()
    assert "Suggests positive: confirm by review" not in page.split('id="summary"')[0]
    reviews.case_reopen(case=signed, by=lab_admin, reason="Recount")
    assert "awaiting review again" in _headline(client, Case.objects.get(pk=signed.pk))


# --- Confirm all, with a confirmation that states N and the positives -----------------------


def test_confirm_all_asks_first_showing_n_and_the_positives(client, claimed, reviewer):
    client.force_login(reviewer)
    review_page = client.get(reverse("review_case", args=[claimed.pk])).content.decode()
    assert "Confirm all 3 remaining high-confidence results (2 parasitized)…" in review_page
    url = reverse("review_confirm_remaining", args=[claimed.pk])
    page = client.get(url).content.decode()
    assert "3 cells</strong> will be confirmed" in page and "2 of them parasitized" in page
    assert "0.550" not in page and "0.990" not in page  # near threshold, quality-flagged
    assert not Review.objects.exists()  # looking confirms nothing

    response = client.post(url)  # no number agreed: refused
    assert response.status_code == 302 and not Review.objects.exists()
    client.post(url, {"expected": 4})  # not what is eligible: refused
    assert not Review.objects.exists()
    client.post(url, {"expected": 3})
    assert Review.objects.count() == 3
    (event,) = AuditEvent.objects.filter(action="review.confirmed_remaining")
    assert event.after["count"] == 3 and event.after["positives"] == 2
    assert len(event.after["images"]) == 3


def test_the_review_page_hints_letters_that_cannot_be_read_as_digits(client, claimed, reviewer):
    client.force_login(reviewer)
    page = client.get(reverse("review_case", args=[claimed.pk])).content.decode()
    assert "<kbd>O</kbd>" not in page
    assert "(letter o)" in page
    assert "<kbd>Ctrl</kbd>+<kbd>Enter</kbd>" in page
