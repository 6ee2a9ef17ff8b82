"""The REST API: scoped lists, creation through services, uploads, token auth, other-site 404."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.test import APIClient

from cases.intake import services
from cases.models import Case, Image, Patient
from tests.cases.web_helpers import cell_png, model_version, predict


@pytest.fixture
def api(clinician) -> APIClient:
    client = APIClient()
    client.force_authenticate(clinician)
    return client


def files(**named: bytes) -> list[SimpleUploadedFile]:
    return [SimpleUploadedFile(name, data) for name, data in named.items()]


def test_a_token_is_issued_and_accepted(clinician, case):
    client = APIClient()
    response = client.post(
        reverse("api_token"), {"username": "clin", "password": "pass-for-tests-123"}
    )
    assert response.status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    listed = client.get(reverse("api_case_list"))
    assert listed.status_code == 200 and listed.json()["results"][0]["id"] == case.pk


def test_anonymous_requests_are_refused():
    assert APIClient().get(reverse("api_case_list")).status_code in (401, 403)


def test_patients_are_listed_and_created_at_the_users_sites(api, site, patient, other_site):
    listed = api.get(reverse("api_patient_list")).json()
    assert [p["identifier"] for p in listed["results"]] == ["P-001"]
    created = api.post(reverse("api_patient_list"), {"site": site.pk, "identifier": "P-002"})
    assert created.status_code == 201 and created.json()["site_name"] == site.name
    foreign = api.post(reverse("api_patient_list"), {"site": other_site.pk, "identifier": "X"})
    assert foreign.status_code == 400 and "site" in foreign.json()["errors"]
    duplicate = api.post(reverse("api_patient_list"), {"site": site.pk, "identifier": "P-001"})
    assert duplicate.status_code == 400
    assert Patient.objects.count() == 2


def test_cases_are_listed_scoped_and_created(api, patient, case, outsider, other_site):
    foreign = services.patient_create(site=other_site, identifier="F-1", by=outsider)
    services.case_create(patient=foreign, by=outsider)
    listed = api.get(reverse("api_case_list")).json()
    assert [c["id"] for c in listed["results"]] == [case.pk]
    created = api.post(reverse("api_case_list"), {"patient": patient.pk, "clinical_notes": "x"})
    assert created.status_code == 201 and created.json()["patient_identifier"] == "P-001"
    refused = api.post(reverse("api_case_list"), {"patient": foreign.pk})
    assert refused.status_code == 400 and "patient" in refused.json()["errors"]
    assert Case.objects.filter(patient=foreign).count() == 1


def test_case_detail_carries_counts_and_summary(api, case, clinician, enqueued):
    stored = services.images_add(
        case=case, files=[("a.png", cell_png(1)), ("b.png", cell_png(2))], by=clinician
    ).stored
    predict(stored[0], model_version(), 0.9)
    data = api.get(reverse("api_case_detail", args=[case.pk])).json()
    assert data["id"] == case.pk and data["counts"]["total"] == 2
    assert data["summary"]["parasitized"] == 1 and data["summary"]["call"] == "positive"
    assert "images" not in data


def test_images_are_uploaded_and_listed_with_predictions(api, case, enqueued):
    response = api.post(
        reverse("api_case_images", args=[case.pk]),
        {"files": files(**{"a.png": cell_png(1), "bad.txt": b"nope"}), "kind": "cell"},
        format="multipart",
    )
    assert response.status_code == 201
    body = response.json()
    assert [s["name"] for s in body["stored"]] == ["a.png"]
    assert body["rejected"][0]["name"] == "bad.txt"
    image = Image.objects.get(case=case)
    predict(image, model_version(), 0.2)
    listed = api.get(reverse("api_case_images", args=[case.pk])).json()["results"]
    assert listed[0]["id"] == image.pk and listed[0]["label"] == "uninfected"
    assert listed[0]["probability"] == 0.2 and listed[0]["heatmap_url"]
    detail = api.get(reverse("api_image_detail", args=[image.pk])).json()
    assert detail == listed[0]


def test_an_upload_where_everything_is_refused_answers_400(api, case, enqueued):
    response = api.post(
        reverse("api_case_images", args=[case.pk]),
        {"files": files(**{"a.txt": b"nope", "b.png": b"\x89PNG broken"})},
        format="multipart",
    )
    assert response.status_code == 400 and len(response.json()["rejected"]) == 2
    assert api.post(reverse("api_case_images", args=[case.pk]), {}).status_code == 400


def test_reviewers_read_but_do_not_write(reviewer, site, patient, case):
    client = APIClient()
    client.force_authenticate(reviewer)
    assert client.get(reverse("api_case_detail", args=[case.pk])).status_code == 200
    assert client.post(reverse("api_case_list"), {"patient": patient.pk}).status_code == 403
    assert (
        client.post(reverse("api_patient_list"), {"site": site.pk, "identifier": "Z"}).status_code
        == 403
    )
    upload = client.post(
        reverse("api_case_images", args=[case.pk]),
        {"files": files(**{"a.png": cell_png(1)})},
        format="multipart",
    )
    assert upload.status_code == 403 and not Image.objects.exists()


def test_another_sites_case_and_image_answer_404(outsider, case, clinician, enqueued):
    image = services.images_add(case=case, files=[("a.png", cell_png(1))], by=clinician).stored[0]
    client = APIClient()
    client.force_authenticate(outsider)
    assert client.get(reverse("api_case_detail", args=[case.pk])).status_code == 404
    assert client.get(reverse("api_case_images", args=[case.pk])).status_code == 404
    assert client.get(reverse("api_image_detail", args=[image.pk])).status_code == 404
    for which in ("file", "heatmap", "heatmap-raw"):
        url = reverse("api_image_content", args=[image.pk, which])
        assert client.get(url).status_code == 404


def test_token_clients_fetch_the_image_and_its_heatmaps(clinician, case, enqueued):
    image = services.images_add(case=case, files=[("a.png", cell_png(1))], by=clinician).stored[0]
    client = APIClient()
    token = client.post(
        reverse("api_token"), {"username": "clin", "password": "pass-for-tests-123"}
    )
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.json()['token']}")
    before = client.get(reverse("api_image_detail", args=[image.pk])).json()["api_urls"]
    assert before["file"] and before["heatmap"] is None and before["heatmap_raw"] is None
    assert client.get(reverse("api_image_content", args=[image.pk, "heatmap"])).status_code == 404

    predict(image, model_version(), 0.9)
    urls = client.get(reverse("api_image_detail", args=[image.pk])).json()["api_urls"]
    original = client.get(urls["file"])
    assert original.status_code == 200 and original["Content-Type"] == "image/png"
    assert b"".join(original.streaming_content) == image.file.open("rb").read()
    assert "private" in original["Cache-Control"]
    for key in ("heatmap", "heatmap_raw"):
        response = client.get(urls[key])
        assert response.status_code == 200
        assert b"".join(response.streaming_content).startswith(b"\x89PNG")
    assert APIClient().get(urls["file"]).status_code in (401, 403)


def test_the_token_endpoint_is_locked_after_repeated_failures(clinician, settings):
    settings.LOGIN_MAX_FAILURES = 3
    client = APIClient()
    for _ in range(2):
        response = client.post(reverse("api_token"), {"username": "clin", "password": "wrong"})
        assert response.status_code == 400
    third = client.post(reverse("api_token"), {"username": "clin", "password": "wrong"})
    assert third.status_code == 429 and "blocked" in third.json()["detail"]
    assert int(third["Retry-After"]) > 0
    right = client.post(
        reverse("api_token"), {"username": "clin", "password": "pass-for-tests-123"}
    )
    assert right.status_code == 429 and "token" not in right.json()
