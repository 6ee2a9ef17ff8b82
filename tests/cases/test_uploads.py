import io
import zipfile

import numpy as np
import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from cases.analysis import queue
from cases.intake import services
from cases.intake.uploads import validate_files
from cases.models import AuditEvent, Case, Image
from classifier.synthetic import make_cell, png_bytes


def cell_png(seed: int, size: int = 64) -> bytes:
    return png_bytes(make_cell(np.random.default_rng(seed), bool(seed % 2), size))


def encoded(fmt: str, size=(64, 64), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    PILImage.new(mode, size, (200, 120, 140) if mode == "RGB" else 128).save(buffer, format=fmt)
    return buffer.getvalue()


def zip_of(entries: dict[str, bytes], method=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def enqueued(monkeypatch):
    calls: list[list[int]] = []
    monkeypatch.setattr(queue, "analysis_enqueue", lambda ids: calls.append(list(ids)))
    return calls


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "BMP"])
def test_each_allowed_format_is_accepted(fmt):
    result = validate_files([(f"cell.{fmt.lower()}", encoded(fmt))])
    assert not result.rejected and result.valid[0].width == 64


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("notes.txt", b"hello, not an image", "not an image"),
        ("empty.png", b"", "empty"),
        ("truncated.png", encoded("PNG")[:60], "damaged"),
        ("anim.gif", encoded("GIF", mode="L"), "GIF images are not accepted"),
        ("tiny.png", encoded("PNG", size=(4, 4)), "only 4x4"),
    ],
)
def test_a_bad_file_is_refused_with_a_reason(name, data, reason):
    result = validate_files([(name, data)])
    assert not result.valid
    assert reason in result.rejected[0].reason


def test_too_many_pixels_is_refused_before_decoding(settings):
    settings.UPLOAD_MAX_PIXELS = 100 * 100
    result = validate_files([("big.png", encoded("PNG", size=(200, 200)))])
    assert "pixels" in result.rejected[0].reason


def test_file_size_limit(settings):
    settings.UPLOAD_MAX_FILE_MB = 1
    noise = np.random.default_rng(0).integers(0, 255, (800, 800, 3), dtype=np.uint8)
    result = validate_files([("noise.png", png_bytes(noise))])
    assert "limit is 1 MB" in result.rejected[0].reason


def test_a_zip_is_expanded_and_each_entry_checked():
    archive = zip_of({"a.png": cell_png(1), "dir/b.png": cell_png(2), "c.txt": b"no"})
    result = validate_files([("batch.zip", archive)])
    assert sorted(v.name for v in result.valid) == ["batch.zip/a.png", "batch.zip/dir/b.png"]
    assert [r.name for r in result.rejected] == ["batch.zip/c.txt"]


def test_a_zip_bomb_is_refused(settings):
    settings.UPLOAD_ZIP_MAX_TOTAL_MB = 5
    archive = zip_of({"bomb.png": b"\0" * (20 * 1024 * 1024)})
    result = validate_files([("bomb.zip", archive)])
    assert not result.valid and "zip bomb" in result.rejected[0].reason


def test_a_highly_compressed_entry_is_refused():
    archive = zip_of({"bomb.bmp": b"\0" * (3 * 1024 * 1024)})
    result = validate_files([("bomb.zip", archive)])
    assert "zip bomb" in result.rejected[0].reason


def test_nested_and_damaged_archives_are_refused():
    nested = zip_of({"inner.zip": zip_of({"a.png": cell_png(1)})})
    result = validate_files([("outer.zip", nested), ("broken.zip", b"PK\x03\x04garbage")])
    reasons = [r.reason for r in result.rejected]
    assert any("archives inside archives" in r for r in reasons)
    assert any("damaged" in r for r in reasons)


def test_large_images_are_taken_as_fields():
    result = validate_files([("field.jpg", encoded("JPEG", size=(1280, 960)))])
    assert result.valid[0].kind == "field"


def test_images_add_stores_good_files_and_reports_bad_ones(case, clinician, enqueued):
    files = [(f"cell{i}.png", cell_png(i)) for i in range(5)]
    files += [("corrupt.png", cell_png(99)[:100]), ("dup.png", cell_png(0))]
    outcome = services.images_add(case=case, files=files, by=clinician)
    assert len(outcome.stored) == 5
    assert outcome.duplicates == ["dup.png"]
    assert [r.name for r in outcome.rejected] == ["corrupt.png"]
    images = list(case.images.all())
    assert {img.status for img in images} == {Image.Status.QUEUED}
    for img in images:
        # Stored under a generated name, never the uploaded one.
        assert img.original_name not in img.file.name
        assert default_storage.exists(img.file.name)
    case.refresh_from_db()
    assert case.status == Case.Status.ANALYSING
    assert AuditEvent.objects.filter(action="images.uploaded").get().after["count"] == 5
    assert "corrupt.png" in str(AuditEvent.objects.get(action="images.rejected").after)


def test_the_same_file_uploaded_again_is_stored_once(case, clinician, enqueued):
    services.images_add(case=case, files=[("a.png", cell_png(1))], by=clinician)
    outcome = services.images_add(case=case, files=[("again.png", cell_png(1))], by=clinician)
    assert not outcome.stored and outcome.duplicates == ["again.png"]
    assert case.images.count() == 1


def test_analysis_is_enqueued_after_commit_in_batches(
    case, clinician, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.ANALYSIS_BATCH_SIZE = 4
    sent: list[list[int]] = []

    class FakeTask:
        @staticmethod
        def delay(ids):
            sent.append(ids)

    monkeypatch.setattr(queue, "analyse_images", FakeTask)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        outcome = services.images_add(
            case=case, files=[(f"{i}.png", cell_png(i)) for i in range(10)], by=clinician
        )
    assert sent == []  # nothing leaves before the transaction commits
    for callback in callbacks:
        callback()
    assert [len(batch) for batch in sent] == [4, 4, 2]
    assert sorted(i for batch in sent for i in batch) == sorted(img.pk for img in outcome.stored)


def test_only_site_members_can_upload(case, outsider, enqueued):
    with pytest.raises(PermissionDenied):
        services.images_add(case=case, files=[("a.png", cell_png(1))], by=outsider)


def test_a_signed_off_case_takes_no_images(case, clinician, enqueued):
    Case.objects.filter(pk=case.pk).update(status=Case.Status.SIGNED_OFF)
    case.refresh_from_db()
    with pytest.raises(ValidationError):
        services.images_add(case=case, files=[("a.png", cell_png(1))], by=clinician)


def test_a_batch_of_500_with_one_corrupt_file_stores_499(
    case, clinician, enqueued, django_capture_on_commit_callbacks
):
    files = [(f"cell{i}.png", cell_png(i, size=40)) for i in range(499)]
    files.insert(250, ("broken.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 50))
    with django_capture_on_commit_callbacks(execute=True):
        outcome = services.images_add(case=case, files=files, by=clinician)
    assert len(outcome.stored) == 499
    assert [r.name for r in outcome.rejected] == ["broken.png"]
    assert "damaged" in outcome.rejected[0].reason or "not an image" in outcome.rejected[0].reason
    assert sum(len(b) for b in enqueued) == 499


# --- A sign-off between checking and storing ----------------------------------------------------


def test_a_sign_off_while_the_files_are_checked_refuses_the_upload(
    case, clinician, reviewer, enqueued, monkeypatch
):
    from cases.review import services as reviews
    from tests.cases.review_helpers import add_cells

    cells = add_cells(case, clinician, [0.95, 0.05])
    reviews.review_claim(case=case, by=reviewer)
    for image in cells:
        reviews.review_submit(image=image, by=reviewer, decision="confirm")
    real_checked_uploads = services.checked_uploads
    # The cells above were uploaded too: only what the late upload leaves behind counts.
    uploaded_events = AuditEvent.objects.filter(action="images.uploaded").count()
    stored_files = default_storage.listdir(f"cases/{case.pk}/images")[1]

    def checked_then_signed_off(files, kind="auto"):
        yield from real_checked_uploads(files, kind)
        # Every file is checked (and stored), no row written yet: a reviewer signs off now.
        reviews.case_sign_off(case=Case.objects.get(pk=case.pk), by=reviewer, diagnosis="positive")

    monkeypatch.setattr(services, "checked_uploads", checked_then_signed_off)
    with pytest.raises(ValidationError, match="signed off while the upload was being checked"):
        services.images_add(case=case, files=[("late.png", cell_png(7))], by=clinician)
    assert Case.objects.get(pk=case.pk).status == Case.Status.SIGNED_OFF
    assert not case.images.filter(original_name="late.png").exists()
    assert AuditEvent.objects.filter(action="images.uploaded").count() == uploaded_events
    assert enqueued == []
    assert default_storage.listdir(f"cases/{case.pk}/images")[1] == stored_files  # removed
