"""The field view: cells drawn on their photograph, counts per field and per case, and the
reviewer's corrections (add a missed cell, remove a false detection) kept for retraining."""

import json

import pytest
from django.urls import reverse

from cases.fields import services as field_reviews
from cases.fields.selectors import counts_of, field_cells, field_payload, reviewed_field_boxes
from cases.intake.selectors import case_images
from cases.models import AuditEvent, Case, CellCorrection, Image
from cases.review import services as reviews
from cases.review.selectors import case_images_with_reviews, review_counts_from
from tests.cases.field_helpers import CELL, add_field
from tests.cases.review_helpers import second_reviewer

pytestmark = pytest.mark.django_db

# Cells 1-5 inside the photograph, cell 6 cut by its edge; cell 2 parasitized.
PROBABILITIES = [0.1, 0.95, 0.2, 0.3, 0.05, 0.99]


@pytest.fixture
def field_case(case, clinician):
    field, cells = add_field(case, clinician, PROBABILITIES)
    return field, cells


@pytest.fixture
def claimed(field_case, case, reviewer):
    reviews.review_claim(case=case, by=reviewer)
    return field_case


def payload_of(response) -> dict:
    html = response.content.decode()
    start = html.index('<script id="field-data" type="application/json">') + len(
        '<script id="field-data" type="application/json">'
    )
    return json.loads(html[start : html.index("</script>", start)])


def test_the_field_view_shows_the_photograph_with_every_cell(client, clinician, field_case):
    field, cells = field_case
    client.force_login(clinician)
    response = client.get(reverse("field_view", args=[field.pk]))
    assert response.status_code == 200
    data = payload_of(response)
    assert data["field"]["width"] == 400 and data["field"]["file_url"].endswith("/file")
    assert [c["id"] for c in data["cells"]] == [c.pk for c in cells]
    border = data["cells"][-1]
    assert border["on_border"] and not border["counted"]
    assert border["probability"] == 0.99  # drawn with its colour, but not counted
    assert data["cells"][1]["heatmap_url"] == reverse("image_heatmap", args=[cells[1].pk])
    assert b"js/field.js" in response.content
    assert b"Add a missed cell" not in response.content  # a clinician does not correct cells


def test_counts_leave_out_cells_cut_by_the_edge(field_case, case):
    field, cells = field_case
    counts = counts_of(field_cells(field), case)
    assert counts["counted"] == 5 and counts["parasitized"] == 1
    assert counts["on_border"] == 1
    assert counts["parasitized_fraction"] == pytest.approx(0.2)
    low, high = counts["ci95"]
    assert 0 < low < 0.2 < high < 1
    assert counts["parasites_per_ul"] is None


def test_a_cell_still_pending_is_drawn_grey_and_not_counted(case, clinician):
    field, cells = add_field(case, clinician, [0.1, None])
    data = field_payload(field)
    assert data["cells"][1]["probability"] is None and data["cells"][1]["status"] == "queued"
    assert data["counts"]["field"]["counted"] == 1 and data["counts"]["field"]["pending"] == 1
    assert not data["done"]


def test_the_case_counts_add_up_every_field(case, clinician):
    add_field(case, clinician, PROBABILITIES, name="a.png")
    add_field(case, clinician, [0.9, 0.1], name="b.png")
    counts = counts_of(list(case_images(case)), case)
    assert counts["counted"] == 7 and counts["parasitized"] == 2


def test_parasites_per_ul_follow_the_red_cell_count_entered_on_the_case(
    client, clinician, field_case, case
):
    field, _ = field_case
    client.force_login(clinician)
    url = reverse("case_red_cells", args=[case.pk])
    back = reverse("field_view", args=[field.pk])
    response = client.post(url, {"red_cells_per_ul": "5,000,000", "next": back})
    assert response.status_code == 302 and response.url == back
    case.refresh_from_db()
    assert case.red_cells_per_ul == 5_000_000
    density = counts_of(field_cells(field), case)["parasites_per_ul"]
    assert density["value"] == pytest.approx(1_000_000)  # 1 of 5 counted cells x 5e6
    assert density["ci95"][0] < 1_000_000 < density["ci95"][1]
    event = AuditEvent.objects.get(action="case.red_cell_count_set")
    assert event.before == {"red_cells_per_ul": None}
    assert event.after == {"red_cells_per_ul": 5_000_000}
    assert b"1,000,000" in client.get(back).content


def test_an_implausible_red_cell_count_is_refused(client, clinician, case):
    client.force_login(clinician)
    client.post(reverse("case_red_cells", args=[case.pk]), {"red_cells_per_ul": "45"})
    case.refresh_from_db()
    assert case.red_cells_per_ul is None
    assert not AuditEvent.objects.filter(action="case.red_cell_count_set").exists()


def test_progress_toward_the_target_cell_count_is_a_setting(settings, field_case, case):
    field, _ = field_case
    settings.TARGET_CELL_COUNT = 4
    counts = counts_of(field_cells(field), case)
    assert counts["target_cells"] == 4 and counts["target_reached"]
    settings.TARGET_CELL_COUNT = 1000
    counts = counts_of(field_cells(field), case)
    assert counts["target_progress"] == pytest.approx(5 / 1000) and not counts["target_reached"]


def test_a_reviewer_adds_a_missed_cell_which_is_cut_stored_and_queued(
    client, reviewer, clinician, claimed, case, enqueued, django_capture_on_commit_callbacks
):
    field, cells = claimed
    client.force_login(reviewer)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("field_cell_add", args=[field.pk]),
            {"x": "300", "y": "160"},
            HTTP_ACCEPT="application/json",
        )
    assert response.status_code == 200, response.content
    added = field.cells.exclude(pk__in=[c.pk for c in cells]).get()
    # Centred on the click, the median size of the field's cells (border cell aside).
    assert added.bbox == {"x": 280, "y": 140, "w": CELL, "h": CELL}
    assert (added.width, added.height) == (CELL, CELL)
    assert added.status == Image.Status.QUEUED and added.detection_score is None
    assert added.uploaded_by == clinician  # the reviewer does not become an uploader
    assert enqueued == [[added.pk]]
    correction = CellCorrection.objects.get(cell=added)
    assert (correction.action, correction.field, correction.reviewer) == ("add", field, reviewer)
    event = AuditEvent.objects.get(action="field.cell_added")
    assert event.after["cell"] == added.pk and event.actor == reviewer
    answer = response.json()
    assert answer["cells"][-1]["id"] == added.pk and answer["cells"][-1]["added"]
    case.refresh_from_db()
    assert case.status == Case.Status.AWAITING_REVIEW and case.assigned_reviewer == reviewer


def test_the_added_cell_is_cut_with_the_one_crop_function(reviewer, claimed, monkeypatch, enqueued):
    from classifier import cells as cells_module

    field, _ = claimed
    seen = []
    real = cells_module.cut_cell
    monkeypatch.setattr(
        cells_module, "cut_cell", lambda rgb, box: seen.append(box) or real(rgb, box)
    )
    field_reviews.cell_add(field=field, x=300, y=160, by=reviewer)
    assert [(b.x, b.y, b.w, b.h) for b in seen] == [(280, 140, CELL, CELL)]


def test_a_second_click_on_a_marked_cell_adds_nothing(client, reviewer, claimed, enqueued):
    field, cells = claimed
    client.force_login(reviewer)
    response = client.post(
        reverse("field_cell_add", args=[field.pk]),
        {"x": "62", "y": "58"},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 400
    assert "already marked" in response.json()["error"]
    assert field.cells.count() == len(cells)


def test_removing_a_detection_takes_it_out_of_every_count(client, reviewer, claimed, case):
    field, cells = claimed
    client.force_login(reviewer)
    parasitized = cells[1]
    response = client.post(
        reverse("field_cell_remove", args=[parasitized.pk]), HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 200, response.content
    parasitized.refresh_from_db()
    assert parasitized.removed
    counts = counts_of(field_cells(field), case)
    assert (counts["counted"], counts["parasitized"], counts["removed"]) == (4, 0, 1)
    review = review_counts_from(case_images_with_reviews(case))
    assert review.cells == 4 and review.ai_parasitized == 0
    assert parasitized.pk not in {
        i.pk for i in case_images_with_reviews(case) if i.removed is False
    }
    assert CellCorrection.objects.get(cell=parasitized).action == "remove"
    event = AuditEvent.objects.get(action="field.cell_removed")
    assert event.before["removed"] is False and event.after["removed"] is True


def test_a_removed_cell_can_be_restored(reviewer, claimed, case):
    field, cells = claimed
    field_reviews.cell_remove(cell=cells[0], by=reviewer)
    field_reviews.cell_restore(cell=cells[0], by=reviewer)
    cells[0].refresh_from_db()
    assert not cells[0].removed
    assert counts_of(field_cells(field), case)["counted"] == 5
    actions = list(CellCorrection.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["remove", "restore"]


def test_sign_off_does_not_wait_for_a_removed_cell(reviewer, claimed, case):
    field, cells = claimed
    for cell in cells[:-1]:
        if cell != cells[2]:
            reviews.review_submit(image=cell, by=reviewer, decision="confirm")
    field_reviews.cell_remove(cell=cells[2], by=reviewer)
    signed = reviews.case_sign_off(case=case, by=reviewer, diagnosis="positive")
    assert signed.final_reviewed_cells == 4 and signed.final_positive_cells == 1


def test_only_the_reviewer_working_the_case_corrects_its_cells(
    client, clinician, claimed, site, enqueued
):
    field, cells = claimed
    client.force_login(clinician)
    response = client.post(reverse("field_cell_remove", args=[cells[0].pk]))
    assert response.status_code == 403
    other = second_reviewer(site)
    client.force_login(other)
    response = client.post(
        reverse("field_cell_add", args=[field.pk]),
        {"x": "300", "y": "160"},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 400 and "claimed by" in response.json()["error"]
    assert not CellCorrection.objects.exists()


def test_another_sites_field_is_not_found(client, outsider, field_case):
    field, cells = field_case
    client.force_login(outsider)
    assert client.get(reverse("field_view", args=[field.pk])).status_code == 404
    assert client.get(reverse("field_data", args=[field.pk])).status_code == 404
    assert client.post(reverse("field_cell_remove", args=[cells[0].pk])).status_code == 404


def test_a_cell_is_not_a_field(client, clinician, field_case):
    _, cells = field_case
    client.force_login(clinician)
    assert client.get(reverse("field_view", args=[cells[0].pk])).status_code == 404


def test_retraining_reads_each_reviewed_field_with_its_corrected_boxes(
    reviewer, claimed, case, clinician, enqueued
):
    field, cells = claimed
    untouched, _ = add_field(case, clinician, [0.1], name="untouched.png")
    field_reviews.cell_remove(cell=cells[0], by=reviewer)
    added = field_reviews.cell_add(field=field, x=300, y=160, by=reviewer)
    [reviewed] = reviewed_field_boxes()
    assert reviewed.image_id == field.pk and reviewed.file == field.file.name
    assert (reviewed.width, reviewed.height) == (400, 300)
    expected = [c.bbox for c in cells[1:]] + [added.bbox]
    assert [{k: b[k] for k in "xywh"} for b in reviewed.boxes] == expected
    assert [b["on_border"] for b in reviewed.boxes] == [False] * 4 + [True, False]


def test_the_review_page_shows_each_cell_in_its_field(client, reviewer, claimed):
    field, cells = claimed
    client.force_login(reviewer)
    response = client.get(reverse("review_case", args=[field.case_id]) + f"?image={cells[1].pk}")
    html = response.content.decode()
    assert f'href="{reverse("field_view", args=[field.pk])}?cell={cells[1].pk}"' in html
    assert 'data-context-viewbox="' in html
    assert cells[-1].pk not in [it["image"].pk for it in response.context["items"]]


def test_the_case_page_lists_its_fields_with_their_counts(client, clinician, field_case, case):
    field, _ = field_case
    client.force_login(clinician)
    response = client.get(reverse("case_detail", args=[case.pk]))
    html = response.content.decode()
    assert reverse("field_view", args=[field.pk]) in html
    assert "of 1000" in html or "of 1,000" in html
