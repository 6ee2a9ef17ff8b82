"""The field view in a real browser: a reviewer opens a field photograph, sees every cell's
outline, zooms, clicks a cell and sees its crop, adds a missed cell and removes a false detection.

The field and its cells are written directly (as the worker would leave them); the added cell's
analysis is not run here (its enqueueing is recorded instead), so it stays grey, awaiting analysis.
"""

import pytest
from playwright.sync_api import expect

from cases.models import AuditEvent, CellCorrection
from cases.review import services as reviews
from tests.cases.field_helpers import FIELD_W, add_field
from tests.e2e.test_diagnosis_flow import Steps, log_in, new_page

pytestmark = [pytest.mark.e2e]

PROBABILITIES = [0.1, 0.95, 0.2, 0.3, 0.05, 0.99]


def test_a_reviewer_checks_and_corrects_a_field_in_the_browser(
    live_server, browser, clinician, reviewer, case, artifacts_dir, monkeypatch
):
    enqueued: list[list[int]] = []
    monkeypatch.setattr(
        "cases.analysis.queue.analysis_enqueue", lambda ids: enqueued.append(list(ids))
    )
    field, cells = add_field(case, clinician, PROBABILITIES)
    reviews.review_claim(case=case, by=reviewer)
    steps = Steps(artifacts_dir / "field-view")
    console: list[str] = []
    page = new_page(browser, live_server.url, console)
    try:
        log_in(page, reviewer.username)
        page.goto(f"/images/{field.pk}/field/")
        outlines = page.locator("#field-svg .cell-outline")
        expect(outlines).to_have_count(len(cells))
        expect(page.locator("#field-svg .cell-outline.is-border")).to_have_count(1)
        expect(page.locator('[data-count="field-counted"]')).to_have_text("5")
        expect(page.locator('[data-count="field-parasitized"]')).to_have_text("1")
        steps.shot(page, "field")

        # Zoom in with the button and the wheel: the stage's scale grows.
        before = page.locator("#zoom-level").inner_text()
        page.get_by_role("button", name="Zoom in").click()
        page.locator("#field-viewport").hover()
        page.mouse.wheel(0, -200)
        assert page.locator("#zoom-level").inner_text() != before

        # Click the parasitized cell: its crop and Grad-CAM appear.
        page.locator(f'#field-svg [data-cell="{cells[1].pk}"]').click()
        crop = page.locator('#cell-panel [data-cell="crop"]')
        expect(crop).to_have_attribute("src", f"/images/{cells[1].pk}/file")
        page.wait_for_function(
            "() => { const i = document.querySelector('#cell-panel [data-cell=\"crop\"]');"
            " return i.complete && i.naturalWidth > 0; }"
        )
        expect(page.locator('#cell-panel [data-cell="heatmap"]')).to_be_visible()
        expect(page.locator('#cell-panel [data-cell="prob"]')).to_have_text("0.950")
        steps.shot(page, "cell-selected")

        # Remove it as a false detection: struck out, and the counts follow.
        page.get_by_role("button", name="Remove: not a cell").click()
        expect(page.locator(f'#field-svg [data-cell="{cells[1].pk}"]')).to_have_class(
            "cell-outline is-removed is-selected"
        )
        expect(page.locator('[data-count="field-counted"]')).to_have_text("4")
        expect(page.locator('[data-count="field-parasitized"]')).to_have_text("0")

        # Add the missed cell centred at (300, 160) in the photograph's pixels.
        page.get_by_role("button", name="Fit").click()
        page.get_by_role("button", name="Add a missed cell").click()
        box = page.locator("#field-stage img").bounding_box()
        scale = box["width"] / FIELD_W
        page.mouse.click(box["x"] + 300 * scale, box["y"] + 160 * scale)
        expect(outlines).to_have_count(len(cells) + 1)
        expect(page.locator("#field-svg .cell-outline.is-added.is-pending")).to_have_count(1)
        expect(page.locator("#field-message")).to_contain_text("added")
        steps.shot(page, "corrected")

        added = CellCorrection.objects.get(action="add").cell
        assert added.bbox == {"x": 280, "y": 140, "w": 40, "h": 40}
        assert enqueued == [[added.pk]]
        assert CellCorrection.objects.get(action="remove").cell_id == cells[1].pk
        assert AuditEvent.objects.filter(action__startswith="field.cell_").count() == 2
        assert not console, console
    except Exception:
        page.screenshot(path=str(steps.folder / "failure-field-view.png"), full_page=True)
        raise
    finally:
        page.context.close()
