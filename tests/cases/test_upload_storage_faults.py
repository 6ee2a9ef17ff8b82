"""An upload while the media folder is read-only or full (issue 15.3): a clear answer that names
no server path, nothing stored half-way, and the same files accepted once storage is back."""

import errno
import os

import numpy as np
import pytest
from django.core.files.storage import FileSystemStorage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.test import APIClient

from cases.models import AuditEvent, Image
from classifier.synthetic import make_cell, png_bytes


class FaultyDisk:
    """FileSystemStorage whose writes fail after `after` good ones, as a read-only (EROFS) or
    full (ENOSPC) disk does: a full disk leaves the part already written behind. The error's
    text carries the absolute path, as the operating system's does."""

    def __init__(self, monkeypatch) -> None:
        self.fault: int | None = None
        self.after = 0
        self.writes = 0
        real_save = FileSystemStorage._save

        def save(storage, name, content):
            if self.fault is not None and self.writes >= self.after:
                path = storage.path(name)
                if self.fault == errno.ENOSPC:
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    with open(path, "wb") as partial:
                        partial.write(content.read(100))
                raise OSError(self.fault, os.strerror(self.fault), path)
            self.writes += 1
            return real_save(storage, name, content)

        monkeypatch.setattr(FileSystemStorage, "_save", save)

    def fail(self, fault: int, after: int = 0) -> None:
        self.fault, self.after, self.writes = fault, after, 0

    def repair(self) -> None:
        self.fault = None


@pytest.fixture
def disk(monkeypatch) -> FaultyDisk:
    return FaultyDisk(monkeypatch)


def cells(n: int) -> list[SimpleUploadedFile]:
    rng = np.random.default_rng(n)
    return [
        SimpleUploadedFile(f"cell{i}.png", png_bytes(make_cell(rng, i % 2 == 0, 64)))
        for i in range(n)
    ]


def stored_files(settings, case) -> list[str]:
    folder = settings.MEDIA_ROOT / "cases" / str(case.pk)
    return sorted(str(p) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def assert_nothing_kept(settings, case) -> None:
    assert not Image.objects.filter(case=case).exists()
    assert stored_files(settings, case) == []  # neither the files written before the fault
    assert not AuditEvent.objects.filter(action="images.uploaded").exists()


@pytest.mark.parametrize(
    ("fault", "reason"),
    [(errno.EROFS, "Read-only file system"), (errno.ENOSPC, "No space left on device")],
)
def test_the_upload_page_answers_a_storage_fault_without_paths_and_keeps_nothing(
    client, case, clinician, disk, settings, enqueued, fault, reason
):
    client.force_login(clinician)
    disk.fail(fault, after=2)  # two files are written, the third one fails
    response = client.post(
        reverse("case_upload", args=[case.pk]),
        {"kind": "auto", "files": cells(4)},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 503
    message = response.json()["error"]
    assert f"storage error: {reason}" in message and "Upload them again later" in message
    assert str(settings.MEDIA_ROOT) not in message and "/" not in message
    assert_nothing_kept(settings, case)
    assert enqueued == []


def test_the_same_files_are_accepted_after_the_fault_not_refused_as_duplicates(
    client, case, clinician, disk, settings, enqueued
):
    client.force_login(clinician)
    disk.fail(errno.ENOSPC, after=1)
    url = reverse("case_upload", args=[case.pk])
    json = {"Accept": "application/json"}
    assert client.post(url, {"files": cells(3)}, headers=json).status_code == 503
    disk.repair()
    response = client.post(url, {"files": cells(3)}, headers=json)
    assert response.status_code == 200
    body = response.json()
    assert len(body["stored"]) == 3 and body["duplicates"] == []
    assert Image.objects.filter(case=case).count() == 3
    assert len(stored_files(settings, case)) == 3


def test_the_plain_upload_form_shows_the_storage_fault_as_a_message(
    client, case, clinician, disk, settings, enqueued
):
    client.force_login(clinician)
    disk.fail(errno.EROFS)
    response = client.post(reverse("case_upload", args=[case.pk]), {"files": cells(2)})
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert "storage error: Read-only file system" in page
    assert str(settings.MEDIA_ROOT) not in page
    assert_nothing_kept(settings, case)


def test_the_api_answers_503_with_a_problem_body_and_retry_after(
    case, clinician, disk, settings, enqueued
):
    api = APIClient()
    api.force_authenticate(clinician)
    url = reverse("api-v1-case-images", args=[case.pk])
    disk.fail(errno.ENOSPC, after=2)
    response = api.post(url, {"files": cells(4), "kind": "cell"}, format="multipart")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/problem+json"
    assert int(response["Retry-After"]) > 0
    problem = response.json()
    assert problem["type"] == "urn:malaria:problem:storage_unavailable"
    assert "storage error: No space left on device" in problem["detail"]
    assert str(settings.MEDIA_ROOT) not in response.content.decode()
    assert_nothing_kept(settings, case)
    disk.repair()
    again = api.post(url, {"files": cells(4), "kind": "cell"}, format="multipart")
    assert again.status_code == 201 and len(again.json()["stored"]) == 4
