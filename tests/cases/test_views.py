"""Server-rendered pages, the upload endpoint, status.json and the private file views."""

import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from cases.intake import services
from cases.models import AuditEvent, Case, Image, Patient
from tests.cases.web_helpers import cell_png, model_version, predict, zip_of

PASSWORD = "pass-for-tests-123"


def upload(client, case, files: dict[str, bytes], json=True, kind="auto"):
    payload = {"kind": kind, "files": [SimpleUploadedFile(n, d) for n, d in files.items()]}
    headers = {"Accept": "application/json"} if json else {}
    return client.post(reverse("case_upload", args=[case.pk]), payload, headers=headers)


# --- log-in ----------------------------------------------------------------------------------


def test_a_login_is_audited(client, clinician):
    response = client.post(reverse("login"), {"username": "clin", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("case_list")
    event = AuditEvent.objects.get(action="user.login")
    assert event.actor == clinician and event.object_id == str(clinician.pk)


def test_a_failed_login_is_audited_with_the_name_tried(client, clinician):
    response = client.post(reverse("login"), {"username": "clin", "password": "wrong"})
    assert response.status_code == 200
    event = AuditEvent.objects.get(action="user.login_failed")
    assert event.after == {"username": "clin", "address": "127.0.0.1"} and event.actor is None
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize(
    "name, args",
    [
        ("case_list", []),
        ("patient_list", []),
        ("patient_create", []),
        ("patient_detail", ["patient"]),
        ("case_detail", ["case"]),
        ("case_status", ["case"]),
        ("image_file", ["image"]),
    ],
)
def test_anonymous_visitors_are_sent_to_login(client, case, clinician, enqueued, name, args):
    image = services.images_add(case=case, files=[("a.png", cell_png(1))], by=clinician).stored[0]
    objects = {"patient": case.patient_id, "case": case.pk, "image": image.pk}
    response = client.get(reverse(name, args=[objects[a] for a in args]))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


# --- lists -----------------------------------------------------------------------------------


def test_case_list_searches_filters_and_pages(client, clinician, site, outsider, other_site):
    for i in range(30):
        patient = services.patient_create(site=site, identifier=f"P-{i:03}", by=clinician)
        services.case_create(patient=patient, by=clinician)
    foreign = services.patient_create(site=other_site, identifier="P-999", by=outsider)
    services.case_create(patient=foreign, by=outsider)
    client.force_login(clinician)
    first = client.get(reverse("case_list"))
    assert len(first.context["page"].object_list) == 25
    assert first.context["page"].paginator.count == 30  # the other site's case is not listed
    second = client.get(reverse("case_list"), {"page": 2})
    assert len(second.context["page"].object_list) == 5
    found = client.get(reverse("case_list"), {"q": "P-007"})
    assert [c.patient.identifier for c in found.context["page"]] == ["P-007"]
    none = client.get(reverse("case_list"), {"status": Case.Status.SIGNED_OFF})
    assert none.context["page"].paginator.count == 0
    assert b"P-999" not in first.content


def test_patient_list_shows_only_the_users_sites(client, clinician, patient, outsider, other_site):
    services.patient_create(site=other_site, identifier="FOREIGN-1", by=outsider)
    client.force_login(clinician)
    response = client.get(reverse("patient_list"))
    assert b"P-001" in response.content and b"FOREIGN-1" not in response.content


# --- patients and cases ----------------------------------------------------------------------


def test_a_clinician_creates_a_patient_at_their_site(client, clinician, site):
    client.force_login(clinician)
    data = {"site": site.pk, "identifier": "P-100", "sex": "M", "age_years": 40}
    response = client.post(reverse("patient_create"), data)
    patient = Patient.objects.get(identifier="P-100")
    assert response.status_code == 302
    assert response["Location"] == reverse("patient_detail", args=[patient.pk])
    assert AuditEvent.objects.filter(action="patient.created", object_id=str(patient.pk)).exists()


def test_a_patient_cannot_be_created_at_another_site(client, clinician, other_site):
    client.force_login(clinician)
    data = {"site": other_site.pk, "identifier": "P-100", "sex": "M"}
    response = client.post(reverse("patient_create"), data)
    assert response.status_code == 200 and "site" in response.context["form"].errors
    assert not Patient.objects.filter(identifier="P-100").exists()


def test_a_duplicate_identifier_is_shown_on_the_form(client, clinician, site, patient):
    client.force_login(clinician)
    data = {"site": site.pk, "identifier": "P-001", "sex": "U"}
    response = client.post(reverse("patient_create"), data)
    assert response.status_code == 200 and response.context["form"].errors
    assert Patient.objects.filter(identifier="P-001").count() == 1


def test_reviewers_view_but_do_not_create(client, reviewer, site, patient, case, enqueued):
    client.force_login(reviewer)
    assert client.get(reverse("patient_detail", args=[patient.pk])).status_code == 200
    assert client.get(reverse("case_detail", args=[case.pk])).status_code == 200
    assert client.get(reverse("patient_create")).status_code == 403
    assert client.post(reverse("case_create", args=[patient.pk])).status_code == 403
    assert upload(client, case, {"a.png": cell_png(1)}).status_code == 403
    assert not Image.objects.exists() and Case.objects.count() == 1


def test_a_case_is_created_from_the_patient_page(client, clinician, patient):
    client.force_login(clinician)
    page = client.get(reverse("patient_detail", args=[patient.pk]))
    assert reverse("case_create", args=[patient.pk]).encode() in page.content
    response = client.post(reverse("case_create", args=[patient.pk]), {"clinical_notes": "Fever"})
    case = Case.objects.get(patient=patient)
    assert response["Location"] == reverse("case_detail", args=[case.pk])
    assert case.clinical_notes == "Fever" and case.created_by == clinician


def test_the_case_page_shows_notes_history_upload_and_the_disclaimer(client, clinician, case):
    client.force_login(clinician)
    client.post(reverse("case_update", args=[case.pk]), {"clinical_notes": "Fever 5 days"})
    response = client.get(reverse("case_detail", args=[case.pk]))
    html = response.content.decode()
    assert "not a stand-alone diagnosis" in html
    assert "Fever 5 days" in html
    assert "case.created" in html and "case.updated" in html  # history = the case's audit events
    assert 'id="upload-form"' in html and 'name="kind"' in html and "multiple" in html
    assert reverse("case_status", args=[case.pk]) in html


# --- upload ----------------------------------------------------------------------------------


def test_a_mixed_upload_stores_exactly_the_good_files(
    client, clinician, case, enqueued, django_capture_on_commit_callbacks
):
    client.force_login(clinician)
    good = cell_png(1)
    upload(client, case, {"first.png": good})
    files = {
        "cell-a.png": cell_png(2),
        "cell-b.png": cell_png(3, parasitized=True),
        "corrupt.png": cell_png(4)[:120],
        "notes.txt": b"this is not an image",
        "again.png": good,
        "batch.zip": zip_of({"z-good.png": cell_png(5), "z-bad.png": b"garbage"}),
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(client, case, files)
    assert response.status_code == 200
    body = response.json()
    assert sorted(s["name"] for s in body["stored"]) == [
        "batch.zip/z-good.png",
        "cell-a.png",
        "cell-b.png",
    ]
    assert body["duplicates"] == ["again.png"]
    reasons = {r["name"]: r["reason"] for r in body["rejected"]}
    assert set(reasons) == {"corrupt.png", "notes.txt", "batch.zip/z-bad.png"}
    assert "damaged" in reasons["corrupt.png"]
    assert (
        "not an image" in reasons["notes.txt"] and "not an image" in reasons["batch.zip/z-bad.png"]
    )
    assert Image.objects.filter(case=case).count() == 4
    assert sorted(enqueued[-1]) == sorted(s["id"] for s in body["stored"])


def test_a_plain_form_upload_redirects_with_a_message_per_problem(
    client, clinician, case, enqueued
):
    client.force_login(clinician)
    good = cell_png(1)
    upload(client, case, {"first.png": good}, json=False)
    response = upload(client, case, {"again.png": good, "notes.txt": b"x" * 20}, json=False)
    assert response.status_code == 302
    assert response["Location"] == reverse("case_detail", args=[case.pk])
    page = client.get(response["Location"])
    messages = [str(m) for m in page.context["messages"]]
    assert "again.png: already in this case" in messages
    assert any(m.startswith("notes.txt: not an image") for m in messages)


def test_an_upload_without_files_is_refused(client, clinician, case):
    client.force_login(clinician)
    response = client.post(
        reverse("case_upload", args=[case.pk]),
        {"kind": "auto"},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 400 and "at least one file" in response.json()["error"]


def test_the_chosen_kind_is_applied(client, clinician, case, enqueued):
    client.force_login(clinician)
    upload(client, case, {"f.png": cell_png(1)}, kind="field")
    assert Image.objects.get(case=case).kind == Image.Kind.FIELD


@pytest.mark.slow
def test_five_hundred_images_upload_in_one_request(
    client, clinician, case, enqueued, django_capture_on_commit_callbacks
):
    files = {f"cell-{i:03}.png": cell_png(i, parasitized=i % 7 == 0) for i in range(500)}
    client.force_login(clinician)
    started = time.perf_counter()
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(client, case, files)
    elapsed = time.perf_counter() - started
    print(f"\n500 PNGs (48x48) uploaded through the view in {elapsed:.2f} s")
    assert response.status_code == 200
    assert len(response.json()["stored"]) == 500 and response.json()["rejected"] == []
    assert Image.objects.filter(case=case).count() == 500
    assert sum(len(ids) for ids in enqueued) == 500


# --- status.json -----------------------------------------------------------------------------


def test_status_json_reports_images_predictions_and_summary(client, clinician, case, enqueued):
    client.force_login(clinician)
    stored = services.images_add(
        case=case,
        files=[(f"c{i}.png", cell_png(i)) for i in range(4)],
        by=clinician,
    ).stored
    version = model_version(threshold=0.5)
    predict(stored[0], version, 0.97)
    predict(stored[1], version, 0.58)  # near the threshold
    predict(stored[2], version, 0.91, quality_ok=False, quality_flags=["not_a_cell"])
    response = client.get(reverse("case_status", args=[case.pk]))
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    data = response.json()
    assert data["status"] == Case.Status.ANALYSING and data["done"] is False
    assert data["counts"] == {"queued": 1, "processing": 0, "done": 3, "failed": 0, "total": 4}
    by_id = {img["id"]: img for img in data["images"]}
    first = by_id[stored[0].pk]
    assert first["probability"] == 0.97 and first["label"] == "parasitized"
    assert first["quality_ok"] is True and first["near_threshold"] is False
    assert first["file_url"] == reverse("image_file", args=[stored[0].pk])
    assert first["heatmap_url"] == reverse("image_heatmap", args=[stored[0].pk])
    assert first["heatmap_raw_url"] == reverse("image_heatmap_raw", args=[stored[0].pk])
    assert by_id[stored[1].pk]["near_threshold"] is True
    assert by_id[stored[2].pk]["quality_flags"] == ["not_a_cell"]
    waiting = by_id[stored[3].pk]
    assert waiting["status"] == "queued" and waiting["parent_id"] is None
    for key in ("probability", "label", "quality_ok", "heatmap_url", "near_threshold"):
        assert waiting[key] is None
    summary = data["summary"]
    assert summary["parasitized"] == 2 and summary["uninfected"] == 0
    assert summary["quality_flagged"] == 1 and summary["near_threshold"] == 1
    assert summary["call"] == "positive" and "reviewer" in summary["rule"]
    assert summary["ci95"][0] < 1.0 <= summary["ci95"][1] + 1e-9


# --- private files ---------------------------------------------------------------------------


def test_an_image_is_streamed_privately_to_its_sites_users(
    client, reviewer, clinician, case, enqueued
):
    data = cell_png(7)
    image = services.images_add(case=case, files=[("a.png", data)], by=clinician).stored[0]
    client.force_login(reviewer)
    response = client.get(reverse("image_file", args=[image.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == data
    assert "private" in response["Cache-Control"]


def test_uploaded_files_have_no_public_url(client, clinician, case, enqueued, settings):
    image = services.images_add(case=case, files=[("a.png", cell_png(7))], by=clinician).stored[0]
    client.force_login(clinician)
    assert client.get(settings.MEDIA_URL + image.file.name).status_code == 404
    assert client.get("/media/" + image.file.name).status_code == 404


def test_heatmaps_exist_only_after_analysis(client, clinician, case, enqueued):
    image = services.images_add(case=case, files=[("a.png", cell_png(7))], by=clinician).stored[0]
    client.force_login(clinician)
    assert client.get(reverse("image_heatmap", args=[image.pk])).status_code == 404
    assert client.get(reverse("image_heatmap_raw", args=[image.pk])).status_code == 404
    predict(image, model_version(), 0.8)
    for name in ("image_heatmap", "image_heatmap_raw"):
        response = client.get(reverse(name, args=[image.pk]))
        assert response.status_code == 200 and "private" in response["Cache-Control"]
        assert b"".join(response.streaming_content).startswith(b"\x89PNG")
