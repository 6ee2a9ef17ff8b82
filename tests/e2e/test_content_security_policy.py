"""The main pages run under the Content-Security-Policy without a single violation: the case
page, the review page and the field view, in a real browser, with their scripts working."""

import pytest
from playwright.sync_api import expect

from cases.review import services as reviews
from tests.cases.field_helpers import add_field
from tests.cases.review_helpers import add_cells
from tests.e2e.test_diagnosis_flow import log_in, new_page

pytestmark = [pytest.mark.e2e]

# Runs before any page script (Playwright injects it outside the page's policy).
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"}`
    + ` at ${e.sourceFile || document.location.pathname}:${e.lineNumber}`);
});
"""


def _visit(page, path: str, ready: str) -> list[str]:
    response = page.goto(path)
    assert response.ok, f"{path}: {response.status}"
    assert "default-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator(ready).first).to_be_visible()
    page.wait_for_load_state("networkidle")
    return page.evaluate("() => window.__cspViolations")


def test_the_main_pages_cause_no_policy_violation(
    live_server, browser, clinician, reviewer, case, monkeypatch
):
    monkeypatch.setattr("cases.analysis.queue.analysis_enqueue", lambda ids: None)
    add_cells(case, clinician, [0.95, 0.05, 0.7], files=True)
    field, _cells = add_field(case, clinician, [0.1, 0.9, 0.3])
    reviews.review_claim(case=case, by=reviewer)
    console: list[str] = []
    page = new_page(browser, live_server.url, console)
    page.context.add_init_script(RECORD_VIOLATIONS)
    log_in(page, reviewer.username)
    violations = {
        "case page": _visit(page, f"/cases/{case.pk}/", "#image-grid"),
        "review page": _visit(page, f"/review/case/{case.pk}/", "main"),
        "field view": _visit(page, f"/images/{field.pk}/field/", "#field-svg .cell-outline"),
    }
    # The field view's script sized the stage (no style attribute is allowed to do it).
    width = page.evaluate("() => document.getElementById('field-stage').style.width")
    assert width.endswith("px") and width != "0px"
    assert violations == {name: [] for name in violations}
    blocked = [line for line in console if "Content Security Policy" in line]
    assert not blocked, blocked
