"""Site scoping: another site's patient, case or image answers 404 on every page and endpoint."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from cases.intake import services
from cases.models import AuditEvent, Case, Image
from tests.cases.web_helpers import cell_png, model_version, predict

# (method, url name, which object the URL names, POST data builder)
ENDPOINTS = [
    ("get", "patient_detail", "patient"),
    ("post", "case_create", "patient"),
    ("get", "case_detail", "case"),
    ("post", "case_update", "case"),
    ("post", "case_upload", "case"),
    ("get", "case_status", "case"),
    ("get", "image_file", "image"),
    ("get", "image_heatmap", "image"),
    ("get", "image_heatmap_raw", "image"),
    ("get", "api_case_detail", "case"),
    ("get", "api_case_images", "case"),
    ("post", "api_case_images", "case"),
    ("get", "api_image_detail", "image"),
]


def post_data(name: str) -> dict:
    if name in ("case_upload", "api_case_images"):
        return {"kind": "auto", "files": [SimpleUploadedFile("new.png", cell_png(42))]}
    return {"clinical_notes": "changed by someone"}


@pytest.fixture
def objects(case, clinician, enqueued):
    image = services.images_add(case=case, files=[("a.png", cell_png(1))], by=clinician).stored[0]
    predict(image, model_version(), 0.9)
    return {"patient": case.patient_id, "case": case.pk, "image": image.pk}


def call(client, method: str, name: str, obj_id: int):
    url = reverse(name, args=[obj_id])
    if method == "get":
        return client.get(url)
    return client.post(url, post_data(name))


@pytest.mark.parametrize("method, name, kind", ENDPOINTS)
def test_another_sites_object_answers_404(client, outsider, objects, method, name, kind):
    events = AuditEvent.objects.count()
    client.force_login(outsider)  # a clinician, but of the other site
    response = call(client, method, name, objects[kind])
    assert response.status_code == 404
    assert AuditEvent.objects.count() == events  # nothing was changed
    assert Case.objects.count() == 1 and Image.objects.count() == 1


@pytest.mark.parametrize("method, name, kind", ENDPOINTS)
def test_the_same_endpoints_serve_the_sites_own_users(
    client, clinician, objects, method, name, kind
):
    client.force_login(clinician)
    response = call(client, method, name, objects[kind])
    assert response.status_code in (200, 201, 302)


def test_the_lists_never_show_another_sites_records(client, outsider, objects):
    client.force_login(outsider)
    assert client.get(reverse("case_list")).context["page"].paginator.count == 0
    assert client.get(reverse("patient_list")).context["page"].paginator.count == 0
    assert client.get(reverse("api_case_list")).json()["count"] == 0
    assert client.get(reverse("api_patient_list")).json()["count"] == 0


def test_a_user_without_a_site_sees_nothing(client, objects, django_user_model):
    loner = django_user_model.objects.create_user("loner", password="pass-for-tests-123")
    client.force_login(loner)
    assert client.get(reverse("case_detail", args=[objects["case"]])).status_code == 404
    assert client.get(reverse("image_file", args=[objects["image"]])).status_code == 404
