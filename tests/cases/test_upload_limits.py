"""Memory and amplification bounds of uploads: requests refused by size before their body is read,
files streamed (never read whole), bounded decoding, and an outcome for every zip entry."""

import io
import zipfile

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from django.test import Client
from PIL import Image as PILImage

from cases.intake import services, uploads
from cases.intake.uploads import validate_files
from classifier.synthetic import png_bytes
from tests.cases.web_helpers import cell_png

GB = 1024**3


class UnreadableBody:
    """A request body that must never be read (the request is refused by its declared size)."""

    def read(self, *args):
        raise AssertionError("the body of an oversized request was read")

    readline = read


def post_declaring(client, path: str, size: int, **headers):
    return client.generic(
        "POST",
        path,
        content_type="multipart/form-data; boundary=xyz",
        CONTENT_LENGTH=str(size),
        **{"wsgi.input": UnreadableBody()},
        headers=headers,
    )


@pytest.fixture
def csrf_client(clinician):
    # CSRF checks on: the CSRF middleware would otherwise parse the body looking for its token.
    client = Client(enforce_csrf_checks=True)
    client.force_login(clinician)
    return client


def test_a_2_gb_page_upload_is_refused_with_413_before_its_body_is_read(csrf_client, case):
    response = post_declaring(
        csrf_client, f"/cases/{case.pk}/upload", 2 * GB, Accept="application/json"
    )
    assert response.status_code == 413
    assert "at most 1,024 MB" in response.json()["error"]
    assert not case.images.exists()


def test_a_2_gb_api_upload_is_refused_with_413_before_its_body_is_read(csrf_client, case):
    response = post_declaring(csrf_client, f"/api/cases/{case.pk}/images/", 2 * GB)
    assert response.status_code == 413
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 413 and "2,048 MB" in response.json()["detail"]


def test_the_request_limit_is_a_setting(csrf_client, case, settings):
    settings.UPLOAD_MAX_REQUEST_MB = 1
    response = post_declaring(csrf_client, f"/cases/{case.pk}/upload", 2 * 1024 * 1024)
    assert response.status_code == 413 and b"at most 1 MB" in response.content


def test_a_large_upload_reaches_the_service_as_a_temporary_file_not_bytes(
    client, clinician, case, monkeypatch, settings
):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
    received = []

    def record(*, case, files, by, kind):
        received.extend(content for _, content in files)
        return services.UploadOutcome()

    monkeypatch.setattr(services, "images_add", record)
    client.force_login(clinician)
    big = SimpleUploadedFile("big.png", b"\x89PNG" + b"\0" * (2 * 1024 * 1024))
    client.post(
        f"/cases/{case.pk}/upload", {"files": [big]}, headers={"Accept": "application/json"}
    )
    assert len(received) == 1 and isinstance(received[0], TemporaryUploadedFile)


class ChunkedOnly(io.BytesIO):
    """A file that records every read and refuses to be read whole (read() or read(-1))."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.reads: list[int] = []

    def read(self, size=-1):
        if size is None or size < 0 or size > 1024 * 1024:
            raise AssertionError(f"read({size}): the whole file was read into memory")
        self.reads.append(size)
        return super().read(size)


def test_an_oversized_file_is_refused_without_reading_it(case, clinician, enqueued, settings):
    settings.UPLOAD_MAX_FILE_MB = 1
    stream = ChunkedOnly(b"\x89PNG\r\n\x1a\n" + b"\0" * (3 * 1024 * 1024))
    outcome = services.images_add(case=case, files=[("big.png", stream)], by=clinician)
    assert "limit is 1 MB" in outcome.rejected[0].reason
    assert sum(stream.reads) <= 8  # at most the format's magic bytes


def test_a_good_file_is_hashed_checked_and_stored_in_chunks(case, clinician, enqueued):
    noise = np.random.default_rng(1).integers(0, 255, (1000, 1000, 3), dtype=np.uint8)
    data = png_bytes(noise)
    stream = ChunkedOnly(data)
    outcome = services.images_add(case=case, files=[("field.png", stream)], by=clinician)
    [image] = outcome.stored
    assert image.kind == "field" and image.file.read() == data
    assert max(stream.reads) <= 1024 * 1024


# --- Decoding at upload: bounded memory whatever the image's size ---------------------------


@pytest.fixture
def decoded_sizes(monkeypatch):
    """The pixel count of every image Pillow fully decodes."""
    sizes: list[int] = []
    real_load = PILImage.Image.load

    def load(self):
        sizes.append(self.size[0] * self.size[1])
        return real_load(self)

    monkeypatch.setattr(PILImage.Image, "load", load)
    return sizes


def encoded(fmt: str, size: tuple[int, int]) -> bytes:
    rgb = np.full((size[1], size[0], 3), (220, 200, 210), np.uint8)
    rgb[::50] = (120, 40, 90)
    buffer = io.BytesIO()
    PILImage.fromarray(rgb).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_large_image_is_checked_without_decoding_it_in_full(fmt, decoded_sizes, monkeypatch):
    monkeypatch.setattr(uploads, "FULL_DECODE_PIXELS", 1_000_000)
    data = encoded(fmt, (2000, 1500))
    decoded_sizes.clear()  # encoding decoded it; the upload's checks are what count
    result = validate_files([(f"field.{fmt.lower()}", data)])
    assert result.valid and result.valid[0].width == 2000
    assert all(pixels <= 1_000_000 for pixels in decoded_sizes)
    damaged = validate_files([(f"cut.{fmt.lower()}", data[: len(data) * 2 // 3])])
    assert "damaged" in damaged.rejected[0].reason


# --- Zip archives: every entry has an outcome -------------------------------------------------


def zip_with(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            if name.endswith("/"):
                archive.writestr(zipfile.ZipInfo(name), b"")
            else:
                archive.writestr(name, data)
    return buffer.getvalue()


def test_every_zip_entry_is_stored_refused_or_skipped_with_a_reason():
    archive = zip_with(
        {
            "ok.png": cell_png(1),
            "..\\..\\win.png": cell_png(2),
            "../x.png": cell_png(3),
            "/etc/abs.png": cell_png(4),
            "C:/drive.png": cell_png(5),
            "dir/": b"",
            "__MACOSX/._ok.png": b"\0\5\26\7",
            ".DS_Store": b"\0" * 20,
        }
    )
    result = validate_files([("batch.zip", archive)])
    assert [v.name for v in result.valid] == ["batch.zip/ok.png"]
    refused = {r.name: r.reason for r in result.rejected}
    for path in ["..\\..\\win.png", "../x.png", "/etc/abs.png", "C:/drive.png"]:
        assert "leaves the archive" in refused[f"batch.zip/{path}"]
    skipped = {s.name: s.reason for s in result.skipped}
    assert skipped == {
        "batch.zip/dir/": "a folder",
        "batch.zip/__MACOSX/._ok.png": "macOS metadata",
        "batch.zip/.DS_Store": "a hidden or system file",
    }


def test_an_upload_reports_skipped_entries(case, clinician, enqueued):
    archive = zip_with({"a.png": cell_png(1), "..\\..\\win.png": cell_png(2), "d/": b""})
    outcome = services.images_add(case=case, files=[("z.zip", archive)], by=clinician).as_dict()
    assert [s["name"] for s in outcome["stored"]] == ["z.zip/a.png"]
    assert [r["name"] for r in outcome["rejected"]] == ["z.zip/..\\..\\win.png"]
    assert outcome["skipped"] == [{"name": "z.zip/d/", "reason": "a folder"}]


def test_a_zip_entry_over_the_file_limit_is_refused_before_unpacking(settings):
    settings.UPLOAD_MAX_FILE_MB = 1
    noise = np.random.default_rng(2).integers(0, 255, 2 * 1024 * 1024, dtype=np.uint8)
    result = validate_files([("z.zip", zip_with({"big.bmp": noise.tobytes()}))])
    assert "limit is 1 MB" in result.rejected[0].reason
