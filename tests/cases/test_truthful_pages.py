"""Words beside every number, pages that stay usable when a case or the queue is big, names that
can be told apart, and empty states that say what to do next."""

import re

import pytest
from django.urls import reverse

from cases.intake.presenters import IMAGE_PAGE_SIZE
from cases.intake.services import case_create
from cases.review.views import QUEUE_PAGE_SIZE
from cases.templatetags.case_format import image_name
from tests.cases.count_helpers import mixed_case
from tests.cases.review_helpers import add_cells


def test_the_case_list_says_field_photographs_and_cells(client, case, clinician):
    mixed_case(case, clinician)
    client.force_login(clinician)
    page = client.get(reverse("case_list")).content.decode()
    # 8 uploaded cells + a failed upload (a cell too) + 2 detected inside the field; the border
    # cell is not counted anywhere.
    assert "1 field photograph · 11 cells" in page
    detail = client.get(reverse("case_detail", args=[case.pk])).content.decode()
    assert re.search(r'id="image-count">\(1 field photograph · 11 cells\)', detail)
    # The cell cut by the field's edge is shown, marked, and not drawn as a positive.
    assert detail.count("at the field's edge: not counted") == 1
    assert detail.count("is-not-counted") == 1
    status = client.get(reverse("case_status", args=[case.pk])).json()
    border = [img for img in status["images"] if img["on_border"]]
    assert len(border) == 1 and border[0]["counted_cell"] is False


def test_the_case_page_and_its_status_poll_show_one_page_of_images(client, case, clinician):
    add_cells(case, clinician, [0.1] * (IMAGE_PAGE_SIZE + 5))
    client.force_login(clinician)
    status = client.get(reverse("case_status", args=[case.pk])).json()
    assert len(status["images"]) == IMAGE_PAGE_SIZE
    assert status["image_page"] == {
        "number": 1,
        "pages": 2,
        "size": IMAGE_PAGE_SIZE,
        "first": 1,
        "last": IMAGE_PAGE_SIZE,
        "total": IMAGE_PAGE_SIZE + 5,
    }
    assert status["summary"]["counted"] == IMAGE_PAGE_SIZE + 5  # the summary covers them all
    second = client.get(reverse("case_status", args=[case.pk]), {"page": 2}).json()
    assert len(second["images"]) == 5
    page = client.get(reverse("case_detail", args=[case.pk]), {"page": 2}).content.decode()
    assert page.count('class="image-card') == 5
    assert f"Images {IMAGE_PAGE_SIZE + 1}–{IMAGE_PAGE_SIZE + 5} of {IMAGE_PAGE_SIZE + 5}" in page


def test_the_review_queue_is_paginated(client, patient, clinician, reviewer):
    for _ in range(QUEUE_PAGE_SIZE + 2):
        add_cells(case_create(patient=patient, by=clinician, clinical_notes=""), clinician, [0.1])
    client.force_login(reviewer)
    page = client.get(reverse("review_queue")).content.decode()
    assert page.count('href="/cases/') == QUEUE_PAGE_SIZE
    assert f"Page 1 of 2 ({QUEUE_PAGE_SIZE + 2} in all)" in page
    second = client.get(reverse("review_queue"), {"page": 2}).content.decode()
    assert second.count('href="/cases/') == 2


def test_a_long_cell_name_keeps_its_distinguishing_end():
    parts = image_name("C137P98ThinF_IMG_20151005_160222_cell_68.png")
    assert parts["tail"] == "160222_cell_68.png"
    assert parts["head"] + parts["tail"] == parts["name"]
    assert image_name("short.png") == {"name": "short.png", "head": "", "tail": "short.png"}


def test_the_case_card_shows_the_end_of_the_name_and_the_full_name_on_hover(
    client, case, clinician
):
    add_cells(case, clinician, [0.1])
    case.images.update(original_name="C137P98ThinF_IMG_20151005_160222_cell_68.png")
    client.force_login(clinician)
    page = client.get(reverse("case_detail", args=[case.pk])).content.decode()
    assert 'title="C137P98ThinF_IMG_20151005_160222_cell_68.png"' in page
    assert '<span class="name-tail">160222_cell_68.png</span>' in page


@pytest.mark.parametrize(
    "url, words",
    [
        ("case_list", "Create a patient, then a case"),
        ("patient_list", "Create a patient</a>, then open a case"),
    ],
)
def test_empty_states_tell_a_newcomer_what_to_do(client, clinician, url, words):
    client.force_login(clinician)
    assert words in client.get(reverse(url)).content.decode()


def test_an_empty_filter_result_offers_the_way_back(client, clinician, case):
    client.force_login(clinician)
    page = client.get(reverse("case_list"), {"q": "nobody"}).content.decode()
    assert "No cases match these filters" in page and "Show every case" in page
