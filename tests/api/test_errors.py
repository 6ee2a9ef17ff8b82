"""One error shape everywhere (RFC 9457 problem details), and the statuses the issue names:
401 with WWW-Authenticate, 409 for conflicts, 413 for oversized uploads, 429 with Retry-After."""

from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from cases.models import Case
from tests.api.conftest import client_for
from tests.cases.web_helpers import cell_png

PROBLEM = "application/problem+json"


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert body["type"].startswith("urn:malaria:problem:")
    return body


def test_a_request_without_credentials_is_401_with_a_challenge(db):
    response = APIClient().get(reverse("api-v1-case-list"))
    assert_problem(response, 401)
    assert response["WWW-Authenticate"] == "Token"


def test_a_wrong_token_is_401_too(db):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert_problem(client.get(reverse("api-v1-case-list")), 401)


def test_an_invalid_field_is_400_with_per_field_errors(clinician, site):
    response = client_for(clinician).post(
        reverse("api-v1-patient-list"), {"site": site.pk, "identifier": ""}, format="json"
    )
    body = assert_problem(response, 400)
    assert list(body["errors"]) == ["identifier"]


def test_an_invalid_filter_is_400(clinician):
    response = client_for(clinician).get(reverse("api-v1-case-list"), {"status": "nonsense"})
    assert "status" in assert_problem(response, 400)["errors"]


def test_an_unknown_api_path_is_a_problem_not_a_page(clinician):
    assert_problem(client_for(clinician).get("/api/v1/no-such-thing/"), 404)


def test_another_sites_case_is_404(outsider, case):
    assert_problem(client_for(outsider).get(reverse("api-v1-case-detail", args=[case.pk])), 404)


def test_uploading_to_a_signed_off_case_is_409(clinician, case, enqueued):
    Case.objects.filter(pk=case.pk).update(
        status=Case.Status.SIGNED_OFF, signed_off_at=timezone.now()
    )
    response = client_for(clinician).post(
        reverse("api-v1-case-images", args=[case.pk]),
        {"files": [SimpleUploadedFile("a.png", cell_png(1))]},
        format="multipart",
    )
    assert "locked" in assert_problem(response, 409)["detail"]
    assert not enqueued


def test_editing_notes_of_a_signed_off_case_is_409(clinician, case):
    Case.objects.filter(pk=case.pk).update(status=Case.Status.SIGNED_OFF)
    response = client_for(clinician).patch(
        reverse("api-v1-case-detail", args=[case.pk]), {"clinical_notes": "x"}, format="json"
    )
    assert_problem(response, 409)


def test_reviewing_an_unclaimed_case_is_409(world, reviewer):
    response = client_for(reviewer).post(
        reverse("api-v1-image-reviews", args=[world.cells[0].pk]),
        {"decision": "confirm"},
        format="json",
    )
    assert "Claim" in assert_problem(response, 409)["detail"]


def test_an_upload_over_the_request_limit_is_413(clinician, case, settings, enqueued):
    settings.UPLOAD_MAX_REQUEST_MB = 1
    big = SimpleUploadedFile("big.png", b"\x89PNG" + b"0" * (1024 * 1024 + 10))
    response = client_for(clinician).post(
        reverse("api-v1-case-images", args=[case.pk]), {"files": [big]}, format="multipart"
    )
    assert response.status_code == 413 and response["Content-Type"] == PROBLEM
    assert not enqueued


def test_an_upload_where_nothing_is_accepted_is_400_with_every_files_outcome(
    clinician, case, enqueued
):
    response = client_for(clinician).post(
        reverse("api-v1-case-images", args=[case.pk]),
        {"files": [SimpleUploadedFile("a.txt", b"nope")]},
        format="multipart",
    )
    body = assert_problem(response, 400)
    assert body["files"] == [
        {
            "name": "a.txt",
            "outcome": "rejected",
            "id": None,
            "reason": body["rejected"][0]["reason"],
        }
    ]


def test_too_many_requests_is_429_with_retry_after(clinician, settings):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "user": "2/minute"}
    client = client_for(clinician)
    for _ in range(2):
        assert client.get(reverse("api-v1-me")).status_code == 200
    response = client.get(reverse("api-v1-me"))
    assert_problem(response, 429)
    assert 0 < int(response["Retry-After"]) <= 60


def test_the_old_paths_answer_like_v1(clinician, case):
    client = client_for(clinician)
    old = client.get(reverse("api_case_detail", args=[case.pk]))
    new = client.get(reverse("api-v1-case-detail", args=[case.pk]))
    assert old.status_code == 200 and old.json() == new.json()
