"""The whole diagnosis path in a real browser, against the live server and a real worker.

A clinician logs in, registers a patient, opens a case and uploads a batch (one file corrupt);
the worker analyses it while the page updates itself with results and Grad-CAM overlays. A second
person, the reviewer (four-eyes rule), claims the case, overrides one result with a reason,
confirms the rest and signs off; the clinician sees the notification and downloads the PDF report,
whose counts agree with the case page, the CSV, the FHIR export and the API; an admin reopens the
case and the signed report stays downloadable, marked superseded. Every step leaves a screenshot in the artefact folder (see conftest.artifacts_dir).
"""

import re

import numpy as np
import pytest
from playwright.sync_api import Page, expect

from cases.models import Case, Image, Review
from cases.review.selectors import case_images_with_reviews, review_counts_from
from classifier.synthetic import make_cell, png_bytes
from tests.cases.count_helpers import pdf_text
from tests.e2e.count_checks import page_counts, report_counts

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PASSWORD = "pass-for-tests-123"
GOOD_FILES = 7
ANALYSIS_TIMEOUT_MS = 180_000  # a cold worker loads TensorFlow and the model first
UI_TIMEOUT_MS = 30_000  # the machine may be busy: generous, but no sleeps
CORRUPT_NAME = "broken-upload.png"


class Steps:
    """Numbered full-page screenshots: 01-login.png, 02-..., and failure-*.png on an error."""

    def __init__(self, folder) -> None:
        self.folder = folder
        self.count = 0
        for pattern in ("[0-9][0-9]-*.png", "failure-*.png"):  # the previous run's
            for old in folder.glob(pattern):
                old.unlink()

    def shot(self, page: Page, name: str) -> None:
        self.count += 1
        page.screenshot(path=str(self.folder / f"{self.count:02d}-{name}.png"), full_page=True)


def write_batch(folder) -> list:
    """Seven synthetic cells (three parasitized) and one file that is not an image."""
    rng = np.random.default_rng(7)
    paths = []
    for i in range(GOOD_FILES):
        parasitized = i % 2 == 0 and i < 6
        path = folder / f"cell-{i + 1:02d}-{'p' if parasitized else 'u'}.png"
        path.write_bytes(png_bytes(make_cell(rng, parasitized, 100)))
        paths.append(path)
    corrupt = folder / CORRUPT_NAME
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"this is not really a PNG" * 20)
    paths.insert(3, corrupt)
    return paths


def new_page(browser, base_url: str, console: list[str]) -> Page:
    context = browser.new_context(
        base_url=base_url, viewport={"width": 1366, "height": 900}, accept_downloads=True
    )
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    page.on("pageerror", lambda exc: console.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            console.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None
        ),
    )
    page.on(
        "response",
        lambda r: (
            console.append(f"HTTP {r.status}: {r.request.method} {r.url}")
            if r.status >= 400
            else None
        ),
    )
    return page


def log_in(page: Page, username: str) -> None:
    page.goto("/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Cases", exact=True)).to_be_visible()
    expect(page.locator(".user-name")).to_contain_text(username)


def reopen_as_admin(
    browser, base_url: str, console: list[str], username: str, case_id: int, reason: str
) -> Page:
    """A lab admin reopens the case with `reason`; the page ends on its prepared and superseded
    reports."""
    page = new_page(browser, base_url, console)
    log_in(page, username)
    page.goto(f"/cases/{case_id}/")
    page.get_by_role("link", name="Reopen…").click()
    page.get_by_label(re.compile("Reason")).fill(reason)
    page.get_by_role("button", name="Reopen").click()
    expect(page.locator("#case-headline")).to_contain_text("awaiting review again")
    page.get_by_role("link", name="Prepared and superseded reports").click()
    return page


def assert_styled(page: Page) -> None:
    """The stylesheet really loaded (WhiteNoise/static handler under live_server)."""
    rules = page.evaluate(
        "() => Array.from(document.styleSheets).reduce((n, s) => n + s.cssRules.length, 0)"
    )
    assert rules > 10, "app.css did not load: the page is unstyled"
    assert page.request.get("/static/js/case.js").ok


def heatmaps_loaded(page: Page) -> None:
    page.wait_for_function(
        """(n) => {
            const imgs = Array.from(document.querySelectorAll('#image-grid .image-card img'));
            return imgs.length === n && imgs.every((img) =>
                /\\/heatmap$/.test(img.getAttribute('src')) && img.complete && img.naturalWidth > 0);
        }""",
        arg=GOOD_FILES,
        timeout=UI_TIMEOUT_MS,
    )


def test_clinician_uploads_reviewer_signs_off_clinician_downloads_the_report(
    live_server,
    browser,
    clinician,
    reviewer,
    lab_admin,
    live_model,
    start_worker,
    artifacts_dir,
    tmp_path,
):
    steps = Steps(artifacts_dir)
    console: list[str] = []
    worker = start_worker()  # loads TensorFlow while the clinician types
    clin = new_page(browser, live_server.url, console)
    rev = None
    try:
        # --- Clinician: log in, register a patient, open a case -----------------------------
        clin.goto("/login/")
        assert_styled(clin)
        steps.shot(clin, "login")
        log_in(clin, clinician.username)
        clin.get_by_role("navigation", name="Main").get_by_role("link", name="New patient").click()
        clin.get_by_label("Patient identifier").fill("E2E-0001")
        clin.get_by_label("Sex").select_option("F")
        clin.get_by_label("Age (years)").fill("29")
        clin.get_by_role("button", name="Create patient").click()
        expect(clin.locator(".messages")).to_contain_text("Patient E2E-0001 created.")
        steps.shot(clin, "patient-created")
        clin.get_by_label("Clinical notes").fill("Fever for three days, travel to an endemic area.")
        clin.get_by_role("button", name="Create case").click()
        expect(clin.locator(".messages")).to_contain_text("Upload its images below.")
        case_id = int(re.search(r"/cases/(\d+)/", clin.url).group(1))
        expect(clin.get_by_role("heading", name=f"Case {case_id}")).to_be_visible()
        assert_styled(clin)
        steps.shot(clin, "case-created")

        # --- Upload a batch through the file input; the corrupt file is refused on its own --
        clin.set_input_files("#upload-files", [str(p) for p in write_batch(tmp_path)])
        expect(clin.locator("#selection")).to_have_text(f"{GOOD_FILES + 1} file(s) selected")
        steps.shot(clin, "files-selected")
        clin.get_by_role("button", name="Upload", exact=True).click()
        expect(clin.locator("#upload-text")).to_contain_text(
            f"Done: uploaded {GOOD_FILES + 1}/{GOOD_FILES + 1} — {GOOD_FILES} stored",
            timeout=60_000,
        )
        expect(clin.locator("#upload-text")).to_contain_text("1 refused")
        expect(clin.locator("#upload-errors li")).to_have_count(1)
        expect(clin.locator("#upload-errors li")).to_contain_text(f"{CORRUPT_NAME}: ")
        steps.shot(clin, "uploaded")

        # --- The page updates itself: every image's result, then the case summary ----------
        cards = clin.locator("#image-grid .image-card")
        expect(cards).to_have_count(GOOD_FILES, timeout=ANALYSIS_TIMEOUT_MS)
        progress = clin.locator("#summary [data-role=progress]")
        expect(progress).to_have_text(
            f"{GOOD_FILES} done, 0 failed, 0 waiting, of {GOOD_FILES}",
            timeout=ANALYSIS_TIMEOUT_MS,
        )
        assert worker.process.poll() is None, worker.output()
        for i in range(GOOD_FILES):
            card = cards.nth(i)
            expect(card.locator("[data-role=status]")).to_have_text("Done")
            expect(card.locator("[data-role=result]")).to_contain_text(
                re.compile(r"(Parasitized|Uninfected) p = [01]\.\d{3}")
            )
        expect(clin.locator("#case-status")).to_have_text("Awaiting review")
        expect(clin.locator("#summary [data-role=call]")).to_have_text(
            re.compile(r"Suggests (positive|negative)|No quality-passed cell")
        )
        expect(clin.locator("#summary [data-role=fraction]")).to_have_text(
            re.compile(r"\d+\.\d\d %")
        )
        expect(clin.locator("#image-count")).to_have_text(f"({GOOD_FILES} cells)")
        # The server-rendered AI/reviewer counts are refreshed in place when analysis ends.
        expect(clin.locator("[data-refresh=review-counts] tbody tr").first).to_contain_text(
            f"Cells with a result{GOOD_FILES}", timeout=ANALYSIS_TIMEOUT_MS
        )
        steps.shot(clin, "results")
        clin.get_by_label("Heatmap overlay").check()
        clin.locator("#image-grid").scroll_into_view_if_needed()
        heatmaps_loaded(clin)
        steps.shot(clin, "heatmaps")
        assert Image.objects.filter(case_id=case_id, status=Image.Status.DONE).count() == GOOD_FILES

        # --- Reviewer (another person: four-eyes rule) claims the case ----------------------
        rev = new_page(browser, live_server.url, console)
        log_in(rev, reviewer.username)
        rev.get_by_role("navigation", name="Main").get_by_role("link", name="Review queue").click()
        row = rev.get_by_role("row").filter(has=rev.get_by_role("link", name=f"Case {case_id}"))
        expect(row).to_contain_text("unclaimed")
        steps.shot(rev, "review-queue")
        row.get_by_role("button", name="Claim").click()
        expect(rev.get_by_role("heading", name=f"Review case {case_id}")).to_be_visible()
        expect(rev.locator("#unreviewed-count")).to_have_text(str(GOOD_FILES))
        expect(rev.locator("#review-detail img[data-field=heatmap]")).to_be_visible()
        steps.shot(rev, "review-claimed")

        # Override one result from the keyboard: pick an "uninfected" cell when there is one,
        # so the override makes it parasitized (and the case positive).
        thumbs = rev.locator("#review-grid .review-thumb")
        target = rev.locator("#review-grid .review-thumb[data-label=uninfected]").first
        if not target.count():
            target = thumbs.first
        target_id = target.get_attribute("data-id")
        model_label = target.get_attribute("data-label")
        new_label = "parasitized" if model_label == "uninfected" else "uninfected"
        target.click()
        expect(rev.locator("#review-detail")).to_have_attribute("data-id", target_id)
        expect(rev.locator("[data-field=override-label]")).to_have_text(new_label)
        rev.keyboard.press("o")
        expect(rev.locator("#reason-code")).to_be_focused()
        rev.locator("#reason-code").blur()
        rev.keyboard.press("2")  # the second reason, then focus moves to the details
        expect(rev.locator("#reason-code")).to_have_value(Review.Reason.STAIN_DEBRIS)
        expect(rev.locator("#reason-text")).to_be_focused()
        rev.keyboard.type("Dark granule is stain debris over the cell, not chromatin.")
        steps.shot(rev, "override-reason")
        rev.get_by_role("button", name="Save override").click()
        expect(rev.locator("#reviewed-count")).to_have_text("1")
        overridden = rev.locator(f"#review-grid .review-thumb[data-id='{target_id}']")
        expect(overridden).to_have_class(re.compile(r"\bis-override\b"))
        expect(overridden.locator(".rev")).to_contain_text(new_label[0].upper())

        # Confirm the rest: the bulk button for high-confidence results, then the keyboard.
        bulk = rev.get_by_role("button", name=re.compile(r"Confirm all \d+ remaining"))
        if bulk.is_enabled():
            bulk.click()  # asks first: N and how many of them are positive
            rev.get_by_role("button", name=re.compile(r"Confirm these \d+")).click()
            expect(rev.locator(".messages")).to_contain_text("high-confidence results.")
        pending = int(rev.locator("#unreviewed-count").inner_text())
        while pending:
            current = rev.locator("#review-detail").get_attribute("data-id")
            expect(
                rev.locator(f"#review-grid .review-thumb[data-id='{current}']")
            ).not_to_have_class(re.compile(r"\bis-reviewed\b"))
            rev.keyboard.press("c")
            expect(rev.locator("#unreviewed-count")).to_have_text(str(pending - 1))
            pending -= 1
        expect(rev.locator("#reviewed-count")).to_have_text(str(GOOD_FILES))
        expect(rev.locator("[data-field=error]")).to_have_text("")
        steps.shot(rev, "all-reviewed")

        # --- Sign off with the diagnosis the reviewer's labels support ----------------------
        rev.get_by_role("link", name="Sign off…").click()
        expect(rev.get_by_role("heading", name=f"Sign off case {case_id}")).to_be_visible()
        case = Case.objects.get(pk=case_id)
        counts = review_counts_from(case_images_with_reviews(case))
        assert counts.unreviewed == 0 and counts.overridden == 1
        assert counts.confirmed == GOOD_FILES - 1
        if new_label == "parasitized":
            assert counts.reviewer_parasitized >= 1
        diagnosis = "Positive" if counts.reviewer_parasitized else "Negative"
        expect(
            rev.locator(".card").filter(has_text="Parasitemia from your labels")
        ).to_contain_text(f"{counts.reviewer_parasitized} / {GOOD_FILES} cells")
        rev.get_by_label(diagnosis, exact=True).check()
        rev.get_by_label("Note (optional)").fill("Signed off in the browser test.")
        steps.shot(rev, "sign-off")
        rev.get_by_role("button", name="Sign off and lock").click()
        expect(rev.locator(".messages")).to_contain_text(
            f"Case {case_id} is signed off and locked."
        )
        expect(rev.locator("#case-status")).to_have_text("Signed off")
        expect(rev.locator("#main")).to_contain_text(f"Final diagnosis: {diagnosis}")
        expect(rev.locator("#upload-form")).to_have_count(0)
        steps.shot(rev, "signed-off")
        rev.goto(f"/review/case/{case_id}/")
        expect(rev.locator("#main")).to_contain_text(
            "This case is signed off: decisions are closed"
        )
        expect(rev.get_by_role("button", name="Save override")).to_have_count(0)
        steps.shot(rev, "review-locked")

        # --- Clinician: sees the sign-off and downloads the PDF report ----------------------
        clin.reload()
        expect(clin.locator("#case-status")).to_have_text("Signed off")
        expect(clin.locator("#upload-form")).to_have_count(0)
        badge = clin.get_by_role("navigation", name="Main").get_by_role(
            "link", name="Notifications"
        )
        expect(badge.locator(".badge-count")).to_have_text("1")
        steps.shot(clin, "clinician-sees-sign-off")
        badge.click()
        expect(clin.locator(".notifications li.unread")).to_contain_text(
            re.compile(
                rf"Case {case_id} .* was signed off by {reviewer.username}: {diagnosis.lower()}"
            )
        )
        steps.shot(clin, "notifications")
        clin.goto(f"/cases/{case_id}/")
        with clin.expect_download() as info:
            clin.get_by_role("link", name="Report (PDF)").click()
        download = info.value
        assert download.suggested_filename.endswith(".pdf"), download.suggested_filename
        report = artifacts_dir / "report.pdf"
        download.save_as(report)
        content = report.read_bytes()
        assert content.startswith(b"%PDF"), content[:20]
        assert len(content) > 1024, len(content)
        steps.shot(clin, "report-downloaded")

        # --- One count everywhere: page, PDF (text), CSV, FHIR and API agree ----------------
        shown = page_counts(clin)
        stated = report_counts(clin, case_id, signed=True)
        assert f"signed off by {reviewer.username}" in pdf_text(content)
        ai = {shown["card_parasitized"], shown["table_parasitized"]}
        ai |= {stated[k] for k in stated if k.endswith("ai_parasitized")}
        assert len(ai) == 1, (shown, stated)
        by_reviewer = {
            int(shown["table_reviewer_parasitized"]),
            stated["api"]["final_positive_cells"],
        }
        by_reviewer |= {stated[k] for k in stated if k.endswith("reviewer_parasitized")}
        assert by_reviewer == {counts.reviewer_parasitized}, (shown, stated)

        # --- An admin reopens: the signed report is kept, marked superseded -----------------
        adm = reopen_as_admin(
            browser,
            live_server.url,
            console,
            lab_admin.username,
            case_id,
            "Recount requested by the clinician",
        )
        expect(adm.get_by_role("row").filter(has_text="superseded by the reopen")).to_have_count(1)
        steps.shot(adm, "reopened-superseded-report-kept")
        assert "PRELIMINARY" in report_counts(adm, case_id, signed=False)["pdf"]
    except BaseException:
        for name, page in (("clinician", clin), ("reviewer", rev)):
            if page is not None and not page.is_closed():
                page.screenshot(path=str(artifacts_dir / f"failure-{name}.png"), full_page=True)
        print("\n".join(console))
        print(worker.output())
        raise
    finally:
        (artifacts_dir / "console.log").write_text("\n".join(console) + "\n")
    # Uncaught script errors and server errors fail the test; other noise is only logged.
    broken = [line for line in console if line.startswith(("page error", "HTTP 5"))]
    assert not broken, broken
