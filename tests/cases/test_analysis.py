"""The worker-side analysis service, called directly (the broker path is in tests/integration)."""

import io

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from cases.analysis.model_versions import model_activate
from cases.analysis.services import images_analyse
from cases.analysis.tasks import analyse_images as analyse_task
from cases.intake import services
from cases.models import AuditEvent, Case, Image, Prediction
from classifier.detector import MAX_CELLS
from classifier.synthetic import make_cell, make_field, png_bytes
from tests.conftest import register_model


def upload_cells(case, by, n: int, seed: int = 0) -> list[Image]:
    rng = np.random.default_rng(seed)
    files = [(f"cell{i}.png", png_bytes(make_cell(rng, i % 2 == 0, 100))) for i in range(n)]
    return services.images_add(case=case, files=files, by=by).stored


def test_a_batch_is_analysed_with_heatmaps_and_the_model_version(case, clinician, active_model):
    images = upload_cells(case, clinician, 6)
    report = images_analyse(image_ids=[img.pk for img in images])
    assert sorted(report.done) == sorted(img.pk for img in images)
    for image in Image.objects.filter(case=case):
        assert image.status == Image.Status.DONE and image.processed_at
        prediction = image.prediction
        assert prediction.model_version == active_model
        assert 0.0 <= prediction.probability <= 1.0
        expected = "parasitized" if prediction.probability >= 0.5 else "uninfected"
        assert prediction.label == expected
        overlay = PILImage.open(default_storage.open(prediction.heatmap.name))
        assert overlay.size == (image.width, image.height)
        assert default_storage.exists(prediction.heatmap_raw.name)
        assert prediction.timings["inference_ms"] > 0
    case.refresh_from_db()
    assert case.status == Case.Status.AWAITING_REVIEW
    event = AuditEvent.objects.get(action="analysis.finished")
    assert len(event.after["results"]) == 6 and event.after["model_version"] == "tiny-v1"


def test_running_a_batch_twice_computes_nothing_twice(case, clinician, active_model):
    ids = [img.pk for img in upload_cells(case, clinician, 4)]
    images_analyse(image_ids=ids)
    heatmaps = set(Prediction.objects.values_list("heatmap", flat=True))
    report = images_analyse(image_ids=ids)
    assert report.done == [] and sorted(report.skipped) == sorted(ids)
    assert Prediction.objects.count() == 4
    assert set(Prediction.objects.values_list("heatmap", flat=True)) == heatmaps
    assert AuditEvent.objects.filter(action="analysis.finished").count() == 1


def test_an_image_left_processing_by_a_killed_worker_is_finished(case, clinician, active_model):
    ids = [img.pk for img in upload_cells(case, clinician, 3)]
    Image.objects.filter(pk=ids[0]).update(status=Image.Status.PROCESSING)
    images_analyse(image_ids=ids)
    assert set(Image.objects.values_list("status", flat=True)) == {Image.Status.DONE}


def test_a_damaged_stored_file_fails_alone_with_a_reason(case, clinician, active_model):
    images = upload_cells(case, clinician, 4)
    broken = images[1]
    default_storage.delete(broken.file.name)
    default_storage.save(broken.file.name, ContentFile(b"not a png any more"))
    images_analyse(image_ids=[img.pk for img in images])
    broken.refresh_from_db()
    assert broken.status == Image.Status.FAILED
    assert "cannot analyse this image" in broken.error
    assert Image.objects.filter(status=Image.Status.DONE).count() == 3
    case.refresh_from_db()
    assert case.status == Case.Status.AWAITING_REVIEW


def test_a_tampered_model_file_is_refused_and_nothing_is_marked_done(case, clinician, active_model):
    ids = [img.pk for img in upload_cells(case, clinician, 3)]
    with default_storage.open(active_model.file.name, "ab") as handle:
        handle.write(b"tampered")
    result = analyse_task.apply(args=[ids]).get()
    assert result["failed"] == ids
    assert not Prediction.objects.exists()
    for image in Image.objects.all():
        assert image.status == Image.Status.FAILED
        assert "SHA-256" in image.error and active_model.sha256 in image.error


def test_no_active_model_fails_with_a_clear_message(case, clinician, db):
    ids = [img.pk for img in upload_cells(case, clinician, 2)]
    analyse_task.apply(args=[ids]).get()
    assert "activate_model" in Image.objects.first().error


def test_activating_another_version_is_used_for_the_next_batch(
    case, clinician, active_model, tiny_model_path
):
    first = upload_cells(case, clinician, 2, seed=1)
    images_analyse(image_ids=[img.pk for img in first])
    second_version = register_model(tiny_model_path, name="tiny-v2", active=False, threshold=0.9)
    model_activate(version=second_version, by=clinician)
    second = upload_cells(case, clinician, 2, seed=2)
    images_analyse(image_ids=[img.pk for img in second])
    assert {p.model_version.name for p in Prediction.objects.filter(image__in=first)} == {"tiny-v1"}
    later = Prediction.objects.filter(image__in=second)
    assert {p.model_version.name for p in later} == {"tiny-v2"}
    assert {p.threshold for p in later} == {0.9}
    assert AuditEvent.objects.filter(action="model.activated").count() == 1


def test_non_cell_images_are_flagged_by_the_quality_gate(case, clinician, active_model):
    blank = np.full((120, 120, 3), 128, np.uint8)
    white = np.full((120, 120, 3), 255, np.uint8)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (120, 120, 3), dtype=np.uint8)
    files = [("blank.png", png_bytes(blank)), ("white.png", png_bytes(white))]
    files.append(("noise.png", png_bytes(noise)))
    images = services.images_add(case=case, files=files, by=clinician).stored
    images_analyse(image_ids=[img.pk for img in images])
    for prediction in Prediction.objects.all():
        assert not prediction.quality_ok, prediction.image.original_name
        assert prediction.quality_flags


def field_png(n_cells: int = 6) -> bytes:
    rng = np.random.default_rng(3)
    centres = [(170 + (k // 3) * 300, 150 + (k % 3) * 300) for k in range(n_cells)]
    rgb, _ = make_field(rng, centres, shape=(640, 960), diameter=110)
    buffer = io.BytesIO()
    PILImage.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def field_with(centres: list[tuple[int, int]], diameter: int = 70) -> bytes:
    rgb, _ = make_field(np.random.default_rng(8), centres, shape=(480, 640), diameter=diameter)
    buffer = io.BytesIO()
    PILImage.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def upload_field(case, clinician, data: bytes) -> Image:
    [field] = services.images_add(
        case=case, files=[("field.png", data)], by=clinician, kind="field"
    ).stored
    return field


def test_a_field_image_is_detected_into_analysed_cells(
    case, clinician, active_model, active_detector
):
    field = upload_field(case, clinician, field_png())
    report = images_analyse(image_ids=[field.pk])
    field.refresh_from_db()
    assert field.status == Image.Status.DONE
    cells = list(field.cells.all())
    assert report.segmented == {field.pk: len(cells)} and len(cells) == 6
    assert all(cell.status == Image.Status.DONE and cell.bbox for cell in cells)
    assert all(0 < cell.detection_score <= 1 and not cell.on_border for cell in cells)
    assert Prediction.objects.filter(image__parent=field).count() == len(cells)
    event = AuditEvent.objects.get(action="field.segmented")
    assert event.after["detector"] == active_detector.name and event.after["cells"] == 6
    # Detecting again (a redelivered task) does not cut the field twice.
    images_analyse(image_ids=[field.pk])
    assert field.cells.count() == len(cells)


def test_touching_cells_are_two_cells_and_edge_cells_are_flagged(
    case, clinician, active_model, active_detector
):
    inside = [(120, 150), (120, 215), (330, 420), (330, 485), (240, 300)]  # two touching pairs
    edge = [(240, 10), (470, 600)]
    field = upload_field(case, clinician, field_with(inside + edge))
    images_analyse(image_ids=[field.pk])
    cells = list(field.cells.all())
    assert sorted(c.on_border for c in cells) == [False] * 5 + [True] * 2
    for cy, cx in inside:  # one detected box centred on each cell
        near = [
            c for c in cells
            if abs(c.bbox["x"] + c.bbox["w"] / 2 - cx) < 15
            and abs(c.bbox["y"] + c.bbox["h"] / 2 - cy) < 15
        ]  # fmt: skip
        assert len(near) == 1


def test_a_field_of_noise_yields_a_bounded_number_of_cells(
    case, clinician, active_model, active_detector
):
    noise = np.random.default_rng(0).integers(0, 256, (960, 1280, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(noise).save(buffer, format="PNG")
    field = upload_field(case, clinician, buffer.getvalue())
    images_analyse(image_ids=[field.pk])
    assert field.cells.count() <= MAX_CELLS


def test_without_an_active_detector_a_field_fails_with_the_reason(case, clinician, active_model):
    field = upload_field(case, clinician, field_png())
    analyse_task.apply(args=[[field.pk]])
    field.refresh_from_db()
    assert field.status == Image.Status.FAILED and "No cell detector is active" in field.error


# --- Faults: one image's exception, storage trouble, killed runs (issues 14.5 and 15.3) ------


def test_any_exception_from_one_image_fails_that_image_alone(
    case, clinician, active_model, monkeypatch
):
    import classifier.preprocess as preprocess

    images = upload_cells(case, clinician, 4)
    poison = default_storage.open(images[2].file.name, "rb").read()
    decode = preprocess.decode_image

    def decode_or_crash(data: bytes):
        if data == poison:
            raise RuntimeError("cv2.error: (-215) an absurd size")
        return decode(data)

    monkeypatch.setattr(preprocess, "decode_image", decode_or_crash)
    report = images_analyse(image_ids=[img.pk for img in images])
    assert sorted(report.done) == sorted(img.pk for img in images if img.pk != images[2].pk)
    images[2].refresh_from_db()
    assert images[2].status == Image.Status.FAILED and "an absurd size" in images[2].error
    case.refresh_from_db()
    assert case.status == Case.Status.AWAITING_REVIEW


def test_a_forward_pass_that_raises_fails_only_the_image_that_caused_it(
    case, clinician, active_model, monkeypatch
):
    from classifier.runtime import active_engine

    images = upload_cells(case, clinician, 5)
    _, engine = active_engine()
    analyse = engine.analyse

    def analyse_or_crash(batch):
        if any(rgb.shape[0] == 100 and rgb[0, 0, 0] == 7 for rgb in batch):
            raise ValueError("this cell has an extreme aspect ratio")
        return analyse(batch)

    monkeypatch.setattr(engine, "analyse", analyse_or_crash)
    marked = images[1]
    rgb = np.asarray(PILImage.open(default_storage.open(marked.file.name)).convert("RGB")).copy()
    rgb[0, 0, 0] = 7
    default_storage.delete(marked.file.name)
    default_storage.save(marked.file.name, ContentFile(png_bytes(rgb)))
    images_analyse(image_ids=[img.pk for img in images])
    marked.refresh_from_db()
    assert marked.status == Image.Status.FAILED and "extreme aspect ratio" in marked.error
    assert Image.objects.filter(status=Image.Status.DONE).count() == 4


def test_a_field_whose_segmentation_raises_fails_alone_and_its_batch_finishes(
    case, clinician, active_model, active_detector, monkeypatch
):
    from classifier.runtime import active_detector as loaded_detector

    field = upload_field(case, clinician, field_png())
    cells = upload_cells(case, clinician, 2)
    _, detector = loaded_detector()

    def crash(rgb):
        raise RuntimeError("OpenCV(4.10) error: (-215:Assertion failed) in resize")

    monkeypatch.setattr(detector, "detect", crash)
    images_analyse(image_ids=[field.pk] + [c.pk for c in cells])
    field.refresh_from_db()
    assert field.status == Image.Status.FAILED and "cannot segment" in field.error
    assert Image.objects.filter(pk__in=[c.pk for c in cells], status="done").count() == 2
    assert not Image.objects.filter(status__in=Image.PENDING).exists()


def test_an_image_that_stopped_the_worker_too_often_fails_instead_of_coming_back(
    case, clinician, active_model, settings
):
    settings.ANALYSIS_MAX_ATTEMPTS = 3
    ids = [img.pk for img in upload_cells(case, clinician, 3)]
    # The first image was claimed by three runs that never finished (the worker died each time).
    Image.objects.filter(pk=ids[0]).update(status=Image.Status.PROCESSING, attempts=3)
    report = images_analyse(image_ids=ids)
    poison = Image.objects.get(pk=ids[0])
    assert poison.status == Image.Status.FAILED and "stopped 3 times" in poison.error
    assert sorted(report.done) == ids[1:]


def read_only_storage(monkeypatch, after: int = 0):
    """Storage whose writes fail (after `after` successful ones) as a read-only disk does."""
    import errno

    from django.core.files.storage import FileSystemStorage

    save = FileSystemStorage._save
    calls = {"n": 0}

    def refuse(self, name, content):
        calls["n"] += 1
        if calls["n"] > after:
            raise OSError(errno.EROFS, "Read-only file system", f"{self.location}/{name}")
        return save(self, name, content)

    monkeypatch.setattr(FileSystemStorage, "_save", refuse)


def heatmap_files(case) -> list[str]:
    folder = f"cases/{case.pk}/heatmaps"
    return default_storage.listdir(folder)[1] if default_storage.exists(folder) else []


def test_a_storage_fault_is_retried_and_leaves_no_files_or_paths_behind(
    case, clinician, active_model, monkeypatch
):
    ids = [img.pk for img in upload_cells(case, clinician, 4)]
    read_only_storage(monkeypatch, after=3)  # a few heatmaps are written, then the disk fails
    monkeypatch.setattr(analyse_task, "max_retries", 0)
    with pytest.raises(OSError):  # the task fails for Celery's records; its images are failed
        analyse_task.apply(args=[ids])
    assert heatmap_files(case) == []  # files of the failed batch are deleted
    image = Image.objects.get(pk=ids[0])
    assert image.status == Image.Status.FAILED
    assert image.error == "analysis kept failing: storage error: Read-only file system"
    assert "/" not in image.error
    case.refresh_from_db()
    assert case.status != Case.Status.AWAITING_REVIEW  # no result: nothing to review


def test_a_transient_fault_gives_the_images_back_for_the_retry(
    case, clinician, active_model, monkeypatch
):
    from celery.exceptions import Retry

    ids = [img.pk for img in upload_cells(case, clinician, 3)]
    read_only_storage(monkeypatch)
    monkeypatch.setattr(analyse_task, "retry", lambda **kw: Retry("retry", when=kw["countdown"]))
    with pytest.raises(Retry):
        analyse_task.apply(args=[ids])
    for image in Image.objects.filter(pk__in=ids):
        # Queued again, not counted as a crash, and stamped as sent (the retry is that message).
        assert image.status == Image.Status.QUEUED and image.attempts == 0
        assert image.enqueued_at is not None and image.claimed_at is None


def test_marking_images_failed_during_a_database_outage_does_not_raise(
    case, clinician, db, monkeypatch
):
    from django.db import OperationalError

    from cases.analysis import tasks

    def outage(**kwargs):
        raise OperationalError("connection to server at 127.0.0.1 failed")

    ids = [img.pk for img in upload_cells(case, clinician, 2)]
    monkeypatch.setattr(tasks, "images_mark_failed", outage)
    result = analyse_task.apply(args=[ids])  # no active model: it would fail them
    assert result.successful(), result.traceback
    # Left pending for the sweep instead of raising out of the task.
    assert set(Image.objects.values_list("status", flat=True)) <= set(Image.PENDING)


def test_heatmaps_left_by_a_killed_run_are_deleted_when_the_image_is_finished(
    case, clinician, active_model
):
    ids = [img.pk for img in upload_cells(case, clinician, 2)]
    stray = default_storage.save(
        f"cases/{case.pk}/heatmaps/{ids[0]}-deadbeef-overlay.png", ContentFile(b"x")
    )
    other = default_storage.save(f"cases/{case.pk}/heatmaps/9{ids[0]}-keep.png", ContentFile(b"x"))
    # The killed run had claimed it (one attempt) and written the stray file.
    Image.objects.filter(pk=ids[0]).update(status=Image.Status.PROCESSING, attempts=1)
    images_analyse(image_ids=ids)
    prediction = Prediction.objects.get(image_id=ids[0])
    assert not default_storage.exists(stray) and default_storage.exists(other)
    assert default_storage.exists(prediction.heatmap.name)


def test_a_case_whose_images_all_failed_does_not_move_to_review(case, clinician, db):
    ids = [img.pk for img in upload_cells(case, clinician, 2)]
    analyse_task.apply(args=[ids])  # no active model
    case.refresh_from_db()
    assert set(Image.objects.values_list("status", flat=True)) == {Image.Status.FAILED}
    assert case.status == Case.Status.OPEN


def test_a_storage_fault_in_one_thread_leaves_no_file_the_other_thread_was_writing(
    case, clinician, active_model, monkeypatch
):
    import errno
    import threading
    import time

    from django.core.files.storage import FileSystemStorage

    ids = [img.pk for img in upload_cells(case, clinician, 2)]
    save = FileSystemStorage._save
    first = threading.Lock()

    def racing(self, name, content):
        if "/heatmaps/" not in name:
            return save(self, name, content)
        if first.acquire(blocking=False):  # the first heatmap fails at once...
            raise OSError(errno.EROFS, "Read-only file system", name)
        time.sleep(0.3)  # ...while the other thread is still writing its own
        return save(self, name, content)

    monkeypatch.setattr(FileSystemStorage, "_save", racing)
    with pytest.raises(OSError):
        images_analyse(image_ids=ids)
    time.sleep(1)  # a write still running after the batch gave up would land now
    assert heatmap_files(case) == []
