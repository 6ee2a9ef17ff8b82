"""One case, every place that states its numbers, in a real browser: the case page's summary
card and AI/reviewer table, the PDF (text extracted), the CSV, the FHIR export and the API.

The case comes analysed (tests/cases/count_helpers.mixed_case: a quality-flagged positive call,
a near-threshold cell, a failed upload, a field photograph with a cell cut by its edge), so no
worker is needed; upload and analysis are walked by test_diagnosis_flow.py. The reviewer
overrides one cell from the keyboard (Ctrl+Enter), confirms the high-confidence rest through the
confirmation page, decides the others, signs off; an admin reopens. Screenshots of each state go
to the artefact folder's counts/ subfolder.
"""

import re

import pytest
from playwright.sync_api import expect

from cases.models import Case
from cases.review.selectors import case_review_counts
from tests.cases.count_helpers import EXPECTED, mixed_case, pdf_text
from tests.e2e.count_checks import page_counts, report_counts
from tests.e2e.test_diagnosis_flow import Steps, log_in, new_page, reopen_as_admin

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_every_page_report_and_api_state_the_same_counts_through_sign_off_and_reopen(
    live_server, browser, case, clinician, reviewer, lab_admin, artifacts_dir
):
    steps = Steps(artifacts_dir / "counts")
    (artifacts_dir / "counts").mkdir(exist_ok=True)
    mixed_case(case, clinician)
    console: list[str] = []
    clin = new_page(browser, live_server.url, console)
    log_in(clin, clinician.username)

    # --- Analysed, not reviewed: one AI count everywhere; the report is preliminary ----------
    clin.goto(f"/cases/{case.pk}/")
    expect(clin.locator("#case-headline")).to_contain_text("AI suggests positive: awaiting review")
    shown = page_counts(clin)
    assert shown["card_parasitized"] == shown["table_parasitized"] == EXPECTED["parasitized"]
    assert shown["card_uninfected"] == shown["table_uninfected"] == EXPECTED["uninfected"]
    steps.shot(clin, "analysed")
    before = report_counts(clin, case.pk, signed=False)
    assert before["pdf_ai_parasitized"] == before["csv_ai_parasitized"] == EXPECTED["parasitized"]
    assert before["api_ai_parasitized"] == EXPECTED["parasitized"]
    assert "PRELIMINARY report (AI only, not reviewed)" in before["pdf"]
    assert "whose decision is final" not in before["pdf"]
    assert clin.get_by_role("link", name="Preliminary report (PDF)").is_visible()

    # --- Reviewer: override from the keyboard, bulk confirm with its confirmation, the rest ---
    rev = new_page(browser, live_server.url, console)
    log_in(rev, reviewer.username)
    rev.goto(f"/review/case/{case.pk}/")
    rev.get_by_role("button", name=f"Claim case {case.pk}").click()
    target = rev.locator("#review-grid .review-thumb[data-label=uninfected][data-quality='1']")
    target = target.first
    target_id = target.get_attribute("data-id")
    target.click()
    expect(rev.locator("#review-detail")).to_have_attribute("data-id", target_id)
    rev.keyboard.press("o")
    rev.locator("#reason-code").blur()
    rev.keyboard.press("5")  # Other
    expect(rev.locator("#reason-text")).to_be_focused()
    rev.keyboard.type("Ring form at the edge of the cell")
    rev.keyboard.press("Control+Enter")
    expect(rev.locator("#reviewed-count")).to_have_text("1")
    steps.shot(rev, "override-saved-with-ctrl-enter")

    bulk = rev.get_by_role("button", name=re.compile(r"Confirm all (\d+) remaining"))
    n, positives = map(
        int, re.search(r"all (\d+) .*\((\d+) parasitized\)", bulk.inner_text()).groups()
    )
    bulk.click()
    expect(rev.locator("[data-role=confirm-summary]")).to_contain_text(
        f"{n} cells will be confirmed with the model's label, {positives} of them parasitized"
    )
    steps.shot(rev, "confirm-all-asks")
    rev.get_by_role("button", name=f"Confirm these {n} ({positives} parasitized)").click()
    expect(rev.locator(".messages")).to_contain_text(f"Confirmed {n} high-confidence results.")
    pending = int(rev.locator("#unreviewed-count").inner_text())
    while pending:
        rev.keyboard.press("c")
        pending -= 1
        expect(rev.locator("#unreviewed-count")).to_have_text(str(pending))
    rev.get_by_role("link", name="Sign off…").click()
    rev.get_by_label("Positive", exact=True).check()
    rev.get_by_role("button", name="Sign off and lock").click()
    expect(rev.locator("#case-headline")).to_contain_text(
        f"Final diagnosis: Positive, signed off by {reviewer.username}"
    )
    steps.shot(rev, "signed-off")

    # --- Signed: the same numbers, AI and reviewer, everywhere; the report is final -----------
    counts = case_review_counts(Case.objects.get(pk=case.pk))
    clin.goto(f"/cases/{case.pk}/")
    expect(clin.locator("#case-headline")).to_contain_text("Final diagnosis: Positive")
    shown = page_counts(clin)
    after = report_counts(clin, case.pk, signed=True)
    ai = {
        shown["card_parasitized"],
        shown["table_parasitized"],
        after["pdf_ai_parasitized"],
        after["csv_ai_parasitized"],
        after["api_ai_parasitized"],
        after["fhir_ai_parasitized"],
    }
    assert ai == {EXPECTED["parasitized"]}, (shown, after)
    by_reviewer = {
        int(shown["table_reviewer_parasitized"]),
        after["pdf_reviewer_parasitized"],
        after["csv_reviewer_parasitized"],
        after["fhir_reviewer_parasitized"],
        after["api"]["final_positive_cells"],
    }
    assert by_reviewer == {counts.reviewer_parasitized}, (shown, after)
    assert after["api"]["final_reviewed_cells"] == counts.reviewed == EXPECTED["predicted"]
    assert f"signed off by {reviewer.username}" in after["pdf"]
    assert "PRELIMINARY" not in after["pdf"]
    assert "Other Ring form at the edge of the cell" in after["pdf"]  # reason code + free text
    steps.shot(clin, "clinician-sees-final")

    # On a phone the column headings are hidden: every number keeps its words.
    clin.set_viewport_size({"width": 390, "height": 844})
    clin.reload()
    label = clin.evaluate(
        """() => getComputedStyle(
            document.querySelector('[data-row=parasitized] td'), '::before').content"""
    )
    assert label == '"AI model: "', label
    expect(clin.locator("#image-count")).to_have_text("(1 field photograph · 11 cells)")
    steps.shot(clin, "phone-words-beside-numbers")
    clin.set_viewport_size({"width": 1366, "height": 900})

    # --- Admin reopens: the signed report stays, marked superseded ---------------------------
    adm = reopen_as_admin(
        browser, live_server.url, console, lab_admin.username, case.pk, "Slide relabelled: recount"
    )
    row = adm.get_by_role("row").filter(has_text="superseded by the reopen")
    expect(row).to_have_count(1)
    steps.shot(adm, "reopened-superseded-listed")
    with adm.expect_download() as info:
        row.get_by_role("link", name="Download").click()
    kept = pdf_text(open(info.value.path(), "rb").read())
    assert "SUPERSEDED: this signed report no longer stands" in kept
    assert f"signed off by {reviewer.username}" in kept
    live = report_counts(adm, case.pk, signed=False)
    assert "PRELIMINARY" in live["pdf"] and live["api"]["final_positive_cells"] is None
    broken = [line for line in console if line.startswith(("page error", "HTTP 5"))]
    assert not broken, broken
