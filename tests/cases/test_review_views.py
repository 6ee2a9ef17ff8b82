"""The review pages: site scoping, roles, the review page, decisions over HTTP, audit, badges."""

import csv
import io
import time

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from cases.models import AuditEvent, Case, Notification, Review
from cases.review import services as reviews
from cases.review.context import review_badges
from tests.cases.review_helpers import add_cells, second_reviewer
from tests.conftest import make_user


@pytest.fixture
def ready(case, clinician):
    add_cells(case, clinician, [0.95, 0.05, 0.55], files=True, failed=1)
    return case


@pytest.fixture
def claimed(ready, reviewer):
    return reviews.review_claim(case=ready, by=reviewer)


def login(client, user):
    client.force_login(user)
    return client


POST_ONLY = ["review_claim", "review_release"]
GET_AND_POST = [
    "review_case",
    "review_sign_off",
    "review_send_back",
    "review_reopen",
    "review_report_pdf",
    "review_report_csv",
    "review_report_fhir",
    "review_exports",
    "review_confirm_remaining",
]


def test_every_review_url_is_404_for_another_site(client, ready, other_site):
    # A reviewer *and* admin of another site: the 404 comes from the site, not from the role.
    stranger = make_user("stranger", "reviewer", [other_site])
    stranger.groups.add(Group.objects.get_or_create(name="admin")[0])
    login(client, stranger)
    image = ready.images.filter(prediction__isnull=False).first()
    for name in GET_AND_POST:
        assert client.get(reverse(name, args=[ready.pk])).status_code == 404, name
    for name in GET_AND_POST + POST_ONLY:
        assert client.post(reverse(name, args=[ready.pk])).status_code == 404, name
    decide = reverse("review_decide", args=[image.pk])
    assert client.post(decide, {"decision": "confirm"}).status_code == 404
    assert not Review.objects.exists()
    assert Case.objects.get(pk=ready.pk).assigned_reviewer is None


def test_a_clinician_cannot_open_the_review_pages(client, ready, clinician):
    login(client, clinician)
    assert client.get(reverse("review_queue")).status_code == 403
    assert client.get(reverse("review_case", args=[ready.pk])).status_code == 403
    assert client.post(reverse("review_claim", args=[ready.pk])).status_code == 403
    image = ready.images.filter(prediction__isnull=False).first()
    response = client.post(reverse("review_decide", args=[image.pk]), {"decision": "confirm"})
    assert response.status_code == 403
    assert not Review.objects.exists()


def test_anonymous_users_are_sent_to_log_in(client, ready):
    response = client.get(reverse("review_case", args=[ready.pk]))
    assert response.status_code == 302 and reverse("login") in response["Location"]


def test_the_queue_lists_cases_with_pending_counts(client, ready, reviewer):
    response = login(client, reviewer).get(reverse("review_queue"))
    assert response.status_code == 200
    body = response.content.decode()
    assert f"Case {ready.pk}" in body and "Claim" in body


def test_claiming_over_http_and_the_conflict_message(client, ready, reviewer, site):
    response = login(client, reviewer).post(reverse("review_claim", args=[ready.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("review_case", args=[ready.pk])
    other = login(client, second_reviewer(site))
    response = other.post(reverse("review_claim", args=[ready.pk]), follow=True)
    assert "claimed this case" in response.content.decode()
    assert Case.objects.get(pk=ready.pk).assigned_reviewer == reviewer


def test_the_review_page_shows_original_overlay_and_shortcuts(client, claimed, reviewer):
    response = login(client, reviewer).get(reverse("review_case", args=[claimed.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    image = claimed.images.filter(prediction__isnull=False).order_by("id").first()
    assert reverse("image_file", args=[image.pk]) in body
    assert reverse("image_heatmap", args=[image.pk]) in body
    assert "js/review.js" in body and "(letter o)" in body
    assert "Confirm all 2 remaining high-confidence results" in body
    assert "could not decode" in body  # the failed image is listed


def test_a_decision_over_json(client, claimed, reviewer):
    image = claimed.images.filter(prediction__isnull=False).order_by("id").first()
    login(client, reviewer)
    url = reverse("review_decide", args=[image.pk])
    response = client.post(url, {"decision": "confirm"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    data = response.json()
    assert data["review"]["label"] == "parasitized"
    assert data["progress"] == {"cells": 3, "reviewed": 1, "unreviewed": 2}


def test_an_override_without_reason_is_refused_over_http(client, claimed, reviewer):
    image = claimed.images.filter(prediction__isnull=False).order_by("id").first()
    login(client, reviewer)
    url = reverse("review_decide", args=[image.pk])
    data = {"decision": "override", "label": "uninfected"}
    response = client.post(url, data, HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    assert "reason" in response.json()["error"]
    response = client.post(
        url,
        {**data, "reason_code": "artefact", "reason_text": "Dust", "next_image": ""},
    )
    assert response.status_code == 302
    assert Review.objects.get().reason_code == "artefact"


def test_a_decision_on_someone_elses_case_is_a_conflict(client, claimed, site):
    image = claimed.images.filter(prediction__isnull=False).first()
    login(client, second_reviewer(site))
    response = client.post(
        reverse("review_decide", args=[image.pk]),
        {"decision": "confirm"},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 409


def test_confirm_remaining_then_sign_off_over_http(client, claimed, reviewer, clinician):
    login(client, reviewer)
    client.post(reverse("review_confirm_remaining", args=[claimed.pk]), {"expected": 2})
    near = claimed.images.filter(prediction__probability=0.55).get()
    client.post(reverse("review_decide", args=[near.pk]), {"decision": "confirm"})
    page = client.get(reverse("review_sign_off", args=[claimed.pk]))
    assert "2 / 3 cells" in page.content.decode()
    response = client.post(
        reverse("review_sign_off", args=[claimed.pk]), {"diagnosis": "positive", "note": ""}
    )
    assert response.status_code == 302
    assert Case.objects.get(pk=claimed.pk).status == Case.Status.SIGNED_OFF
    assert Notification.objects.filter(user=clinician).count() == 1


def test_sign_off_page_refuses_while_cells_are_pending(client, claimed, reviewer):
    login(client, reviewer)
    response = client.post(
        reverse("review_sign_off", args=[claimed.pk]), {"diagnosis": "positive"}, follow=True
    )
    assert "not reviewed yet" in response.content.decode()
    assert Case.objects.get(pk=claimed.pk).status == Case.Status.AWAITING_REVIEW


def test_send_back_over_http(client, claimed, reviewer):
    login(client, reviewer)
    url = reverse("review_send_back", args=[claimed.pk])
    assert client.get(url).status_code == 200
    client.post(url, {"reason": "Smear too thick"})
    assert Case.objects.get(pk=claimed.pk).status == Case.Status.OPEN


@pytest.fixture
def signed(claimed, reviewer):
    for image in claimed.images.filter(prediction__isnull=False):
        reviews.review_submit(image=image, by=reviewer, decision="confirm")
    return reviews.case_sign_off(case=claimed, by=reviewer, diagnosis="positive")


def test_reopen_is_for_admins_only(client, signed, reviewer, lab_admin):
    url = reverse("review_reopen", args=[signed.pk])
    assert login(client, reviewer).get(url).status_code == 403
    login(client, lab_admin)
    client.post(url, {"reason": ""})
    assert Case.objects.get(pk=signed.pk).status == Case.Status.SIGNED_OFF
    client.post(url, {"reason": "Second opinion requested"})
    assert Case.objects.get(pk=signed.pk).status == Case.Status.AWAITING_REVIEW


def test_the_audit_page_filters_and_exports_csv(client, signed, lab_admin, reviewer, clinician):
    assert login(client, clinician).get(reverse("review_audit")).status_code == 403
    login(client, lab_admin)
    response = client.get(reverse("review_audit"), {"action": "case.signed_off"})
    assert response.status_code == 200
    assert response.context["page"].paginator.count == 1
    response = client.get(reverse("review_audit"), {"user": "rev", "case": signed.pk})
    assert {e.action for e in response.context["page"].object_list} == {
        "case.claimed",
        "review.confirmed",
        "case.signed_off",
    }
    today = signed.signed_off_at.date().isoformat()
    response = client.get(reverse("review_audit"), {"date_from": today, "date_to": today})
    assert response.context["page"].paginator.count == AuditEvent.objects.count()
    response = client.get(reverse("review_audit_csv"), {"action": "review.confirmed"})
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:4] == ["seq", "created_at", "actor", "action"]
    assert len(rows) == 1 + 3
    assert all(row[3] == "review.confirmed" for row in rows[1:])


def test_a_lab_admin_sees_only_events_of_their_sites(client, signed, other_site, lab_admin):
    other_admin = make_user("adm-other", "admin", [other_site])
    response = login(client, other_admin).get(reverse("review_audit"))
    assert response.context["page"].paginator.count == 0


def test_notifications_page_and_badges(client, signed, clinician, rf):
    request = rf.get("/")
    request.user = clinician
    badges = review_badges(request)
    assert badges["notification_badge"]() == 1
    assert badges["review_queue_badge"]() == 0
    login(client, clinician)
    response = client.get(reverse("review_notifications"))
    assert "signed off" in response.content.decode()
    client.post(reverse("review_notifications"))
    assert not Notification.objects.filter(user=clinician, read_at__isnull=True).exists()


def test_the_counts_include_renders_ai_and_reviewer_columns(signed):
    from django.template.loader import render_to_string

    from cases.review.selectors import case_review_counts

    html = render_to_string(
        "review/_counts.html", {"counts": case_review_counts(signed), "case": signed}
    )
    assert "AI model" in html and "Reviewer" in html and "Final diagnosis: Positive" in html


def _review_page_queries(client, case) -> tuple[int, float]:
    url = reverse("review_case", args=[case.pk])
    client.get(url)  # warm-up: sessions, template cache
    started = time.perf_counter()
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries), time.perf_counter() - started


def test_the_review_page_query_count_does_not_grow_with_images(client, case, clinician, reviewer):
    add_cells(case, clinician, [0.1, 0.9, 0.6])
    reviews.review_claim(case=case, by=reviewer)
    reviews.review_confirm_remaining(case=case, by=reviewer)
    login(client, reviewer)
    few, _ = _review_page_queries(client, case)
    add_cells(case, clinician, [i / 60 for i in range(60)])
    many, _ = _review_page_queries(client, case)
    assert many == few


def test_the_nav_include_shows_the_queue_badge(ready, reviewer, rf):
    from django.template import engines

    request = rf.get("/")
    request.user = reviewer
    request.resolver_match = None
    context = {"request": request, "user": reviewer, "is_reviewer": True, **review_badges(request)}
    html = engines["django"].from_string('{% include "review/_nav.html" %}').render(context)
    assert reverse("review_queue") in html
    assert 'aria-label="1 new cases to review">1</span>' in html


def test_the_queue_page_offers_no_claim_to_a_reviewer_who_uploaded_images(client, ready, site):
    both = make_user("both", "reviewer", [site])
    both.groups.add(Group.objects.get_or_create(name="clinician")[0])
    add_cells(ready, both, [0.3])
    login(client, both)
    html = client.get(reverse("review_queue")).content.decode()
    assert f"Case {ready.pk}" in html
    assert reverse("review_claim", args=[ready.pk]) not in html
    assert "you created it or uploaded its images" in html


def test_the_case_page_lists_every_diagnosis_with_the_reopen_reason(client, signed, lab_admin):
    reviews.case_reopen(case=signed, by=lab_admin, reason="Wrong patient slide")
    login(client, lab_admin)
    html = client.get(reverse("case_detail", args=[signed.pk])).content.decode()
    assert 'id="diagnoses-title"' in html
    assert "Signed off: Positive" in html  # kept although the reopen blanked the case's columns
    assert "Reopened" in html and "Wrong patient slide" in html
