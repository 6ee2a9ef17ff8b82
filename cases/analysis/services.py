"""The worker-side analysis service: images in the database -> predictions and heatmaps.

Called by the thin Celery task in cases.analysis.tasks with image ids. Idempotent: it computes only what is
missing (images not yet done or failed, fields not yet segmented) and a Prediction is created only
while holding the image's row lock, so a redelivered or concurrent task never duplicates a result.
Heavy work (decoding, the forward pass, PNG encoding, storage writes) happens outside transactions.

Faults: any exception from one image fails that image with its reason, never its batch; storage and
database trouble is raised as transient for the task to retry (what was saved stays saved); an image
that stopped a worker ANALYSIS_MAX_ATTEMPTS times (counted per claim) fails instead of coming back
forever; files written for results that were never recorded are deleted.
"""

import functools
import io
import logging
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import DatabaseError, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone
from PIL import Image as PILImage

from cases.analysis.budgets import check_cell_count, check_pixel_budget
from cases.analysis.domain_guard import domain_check_cells
from cases.analysis.status import case_status_refresh
from cases.audit.trail import audit_record
from cases.models import Case, Image, Prediction
from cases.storage import content_sha256, file_folder, file_store, storage_error_text

logger = logging.getLogger(__name__)


@functools.cache
def _io_pool() -> ThreadPoolExecutor:
    """Threads for decoding and PNG encoding (created lazily, once per worker process)."""
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="analysis-io")


class TransientAnalysisError(RuntimeError):
    """Storage or database trouble that a retry may fix."""


# Faults of the platform, not of one image: raised for the task to retry the batch later.
TRANSIENT = (TransientAnalysisError, DatabaseError, OSError)


def poison_reason(limit: int) -> str:
    return (
        f"the analysis stopped {limit} times while working on this image (it may crash the "
        "worker); not retried automatically"
    )


@dataclass
class AnalysisReport:
    done: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    skipped: list[int] = field(default_factory=list)
    segmented: dict[int, int] = field(default_factory=dict)


def _read_rgb(image: Image) -> np.ndarray:
    from classifier.preprocess import decode_image

    try:
        with default_storage.open(image.file.name, "rb") as handle:
            data = handle.read()
    except FileNotFoundError as exc:
        raise ValueError(f"the stored file is missing ({image.file.name})") from exc
    except OSError as exc:
        raise TransientAnalysisError(
            f"cannot read the stored image ({storage_error_text(exc)})"
        ) from exc
    check_pixel_budget(data)  # before decoding: the header's pixel count
    return decode_image(data)


def _delete_files(paths) -> None:
    for path in paths:
        try:
            default_storage.delete(path)
        except OSError:
            logger.warning("Could not delete %s", path, exc_info=True)


def _remove_leftovers(folder: str, image_ids, keep: set[str]) -> int:
    """Delete files an interrupted run wrote for these images but never recorded.

    Files under `folder` are named '<image id>-…'; call only for images whose files this run has
    just recorded, so every other file of theirs is unreferenced."""
    try:
        _, names = default_storage.listdir(folder)
    except (OSError, NotImplementedError):
        return 0
    prefixes = tuple(f"{pk}-" for pk in image_ids)
    leftovers = [
        f"{folder}/{name}"
        for name in names
        if name.startswith(prefixes) and f"{folder}/{name}" not in keep
    ]
    _delete_files(leftovers)
    return len(leftovers)


def failed_images_remove_leftovers(*, image_ids: list[int]) -> int:
    """Delete what runs that never finished wrote for these failed images: a cell's heatmaps, a
    field's cell crops whose rows were never recorded. Call after the failure is committed (an
    image given up as poison crashed its workers between writing files and recording them)."""
    images = list(Image.objects.filter(pk__in=image_ids, status=Image.Status.FAILED))
    keep = {
        name
        for pair in Prediction.objects.filter(image__in=images).values_list(
            "heatmap", "heatmap_raw"
        )
        for name in pair
    }
    keep |= set(Image.objects.filter(parent__in=images).values_list("file", flat=True))
    removed = 0
    for case_id in {img.case_id for img in images}:
        mine = [img for img in images if img.case_id == case_id]
        heatmaps = file_folder(Prediction(image=mine[0]), "heatmap")
        removed += _remove_leftovers(heatmaps, [img.pk for img in mine], keep)
        fields = [img.pk for img in mine if img.kind == Image.Kind.FIELD]
        if fields:
            crops = file_folder(Image(case_id=case_id, parent_id=fields[0]), "file")
            removed += _remove_leftovers(crops, fields, keep)
    return removed


@transaction.atomic
def images_mark_failed(*, image_ids: list[int], reason: str) -> list[int]:
    """Mark images that are still pending as failed, with a readable reason (and audit it)."""
    images = list(
        Image.objects.select_for_update()
        .filter(pk__in=image_ids, status__in=Image.PENDING)
        .order_by("pk")
    )
    if not images:
        return []
    now = timezone.now()
    for image in images:
        image.status, image.error, image.processed_at = Image.Status.FAILED, reason, now
        image.save(update_fields=["status", "error", "processed_at"])
    for case in Case.objects.filter(pk__in={img.case_id for img in images}):
        audit_record(
            actor=None,
            action="analysis.failed",
            obj=case,
            case=case,
            after={
                "images": [img.pk for img in images if img.case_id == case.pk],
                "reason": reason,
            },
        )
        case_status_refresh(case=case)
    return [img.pk for img in images]


def images_release(*, image_ids: list[int], due=None) -> int:
    """Give back a claim after a transient error (a retry is coming, due at `due`): the images
    are queued again, and the claim does not count as an attempt that stopped a worker."""
    return Image.objects.filter(pk__in=image_ids, status=Image.Status.PROCESSING).update(
        status=Image.Status.QUEUED,
        claimed_at=None,
        enqueued_at=due or timezone.now(),
        attempts=Greatest(F("attempts") - 1, 0),
    )


def _touch(images: list[Image]) -> None:
    """Tell the sweep this worker is alive and still working on these images."""
    Image.objects.filter(pk__in=[img.pk for img in images], status=Image.Status.PROCESSING).update(
        claimed_at=timezone.now()
    )


def _mark_processing(image_ids: list[int]) -> list[Image]:
    """Pending images of this batch, marked PROCESSING; each claim counts as an attempt. Done or
    failed ones are left alone; one that stopped a worker too often fails instead."""
    Image.objects.filter(pk__in=image_ids, status__in=Image.PENDING).update(
        status=Image.Status.PROCESSING, claimed_at=timezone.now(), attempts=F("attempts") + 1
    )
    claimed = list(
        Image.objects.filter(pk__in=image_ids, status=Image.Status.PROCESSING)
        .select_related("case")
        .order_by("pk")
    )
    limit = settings.ANALYSIS_MAX_ATTEMPTS
    poison = [img.pk for img in claimed if img.attempts > limit]
    if poison:
        failed = images_mark_failed(image_ids=poison, reason=poison_reason(limit))
        failed_images_remove_leftovers(image_ids=failed)
    return [img for img in claimed if img.attempts <= limit]


@dataclass
class _Crop:
    box: object  # classifier.cells.CellBox
    path: str
    data: bytes
    width: int
    height: int


def _store_crops(image: Image, rgb: np.ndarray, boxes) -> list[_Crop]:
    """Cut each detected cell (classifier.cells.cut_cell) and store it as a PNG; on a storage
    error the crops already written are deleted before it is raised."""
    from classifier.cells import cut_cell

    crops: list[_Crop] = []
    try:
        for box in boxes:
            cell = cut_cell(rgb, box)
            buffer = io.BytesIO()
            PILImage.fromarray(cell).save(buffer, format="PNG", compress_level=1)
            data = buffer.getvalue()
            path = file_store(Image(case_id=image.case_id, parent=image), "file", "cell.png", data)
            crops.append(_Crop(box, path, data, cell.shape[1], cell.shape[0]))
    except BaseException:
        _delete_files(crop.path for crop in crops)
        raise
    return crops


def _cell_row(image: Image, crop: _Crop, n: int) -> Image:
    box = crop.box
    return Image(
        case_id=image.case_id,
        parent=image,
        bbox={"x": box.x, "y": box.y, "w": box.w, "h": box.h},
        on_border=box.on_border,
        detection_score=round(box.score, 4),
        file=crop.path,
        original_name=f"{image.original_name} cell {n + 1}",
        kind=Image.Kind.CELL,
        sha256=content_sha256(crop.data),
        width=crop.width,
        height=crop.height,
        uploaded_by_id=image.uploaded_by_id,
        status=Image.Status.PROCESSING,
        # Claimed by this run from birth: the sweep must not take them for a dead worker's.
        claimed_at=timezone.now(),
    )


@transaction.atomic
def _record_cells(image: Image, crops: list[_Crop], detector_name: str, detect_ms: float):
    """Store the detected cells as child images and the field as done; returns the children's
    ids, or None when another run recorded this field's cells first."""
    locked = Image.objects.select_for_update().get(pk=image.pk)
    if locked.cells.exists():
        return None
    children = Image.objects.bulk_create(
        [_cell_row(image, crop, n) for n, crop in enumerate(crops)]
    )
    locked.status, locked.processed_at = Image.Status.DONE, timezone.now()
    locked.error = "" if children else "no cells were found in this field image"
    locked.save(update_fields=["status", "processed_at", "error"])
    audit_record(
        actor=None,
        action="field.segmented",
        obj=locked,
        case=locked.case,
        after={
            "cells": len(children),
            "on_border": int(sum(bool(crop.box.on_border) for crop in crops)),
            "detector": detector_name,
            "detect_ms": detect_ms,
        },
    )
    return [child.pk for child in children]


def _segment_field(image: Image, report: AnalysisReport) -> list[int]:
    """Detect the cells of a whole-field image and store each as a crop (a child image); returns
    the children's ids. Cells cut by the field's edge are stored flagged on_border: drawn on the
    field, never counted."""
    from classifier.runtime import active_detector

    existing = list(image.cells.values_list("pk", flat=True))
    if existing:  # detected by an earlier, interrupted run: do not cut it twice
        return existing
    detector_version, detector = active_detector()
    rgb = _read_rgb(image)
    started = time.perf_counter()
    boxes = detector.detect(rgb)
    detect_ms = round((time.perf_counter() - started) * 1000, 1)
    check_cell_count(boxes)  # before any crop is cut or stored
    crops = _store_crops(image, rgb, boxes)
    try:
        child_ids = _record_cells(image, crops, detector_version.name, detect_ms)
    except BaseException:
        _delete_files(crop.path for crop in crops)
        raise
    if child_ids is None:
        _delete_files(crop.path for crop in crops)
        return list(image.cells.values_list("pk", flat=True))
    if image.attempts > 1:
        keep = {crop.path for crop in crops}
        _remove_leftovers(
            file_folder(Image(case_id=image.case_id, parent=image), "file"), [image.pk], keep
        )
    report.segmented[image.pk] = len(child_ids)
    return child_ids


def _write_heatmaps(cells: list[Image], results) -> dict[int, tuple[str, str]]:
    """Store each cell's Grad-CAM overlay and raw map; on a storage error the files already
    written are deleted before it is raised."""
    from classifier.overlay import heatmap_png, overlay_png

    written: list[str] = []

    def write(item) -> tuple[str, str]:
        image, (rgb, result) = item
        files = Prediction(image=image)  # not saved: its upload_to names the files
        overlay = file_store(files, "heatmap", "overlay.png", overlay_png(rgb, result.heatmap))
        written.append(overlay)
        raw = file_store(files, "heatmap_raw", "raw.png", heatmap_png(result.heatmap))
        written.append(raw)
        return overlay, raw

    # PNG encoding and file writes release the GIL: two threads keep both cores busy.
    futures = [_io_pool().submit(write, item) for item in zip(cells, results, strict=True)]
    try:
        paths = [future.result() for future in futures]
    except BaseException:
        # The other thread may be writing a file right now: let it finish before deleting.
        for future in futures:
            future.cancel()
        wait(futures)
        _delete_files(written)
        raise
    return {image.pk: pair for image, pair in zip(cells, paths, strict=True)}


def _prediction_row(row: Image, result, version, files: tuple[str, str], timings) -> Prediction:
    return Prediction(
        image=row,
        model_version=version,
        probability=result.probability,
        label=result.model_label,
        threshold=version.threshold,
        heatmap=files[0],
        heatmap_raw=files[1],
        quality_ok=result.quality.ok,
        quality_flags=list(result.quality.flags),
        quality_metrics=dict(result.quality.metrics),
        timings=timings,
    )


@transaction.atomic
def _record_predictions(cells, results, files, version, timings, report) -> list[int]:
    """Save a Prediction for each cell still pending (under its row lock), mark it done and audit
    the results per case; returns the ids recorded."""
    locked = {
        img.pk: img
        for img in Image.objects.select_for_update().filter(pk__in=[c.pk for c in cells])
    }
    already = set(Prediction.objects.filter(image_id__in=locked).values_list("image_id", flat=True))
    now = timezone.now()
    per_case: dict[int, list[dict]] = {}
    new_predictions = []
    for image, (_, result) in zip(cells, results, strict=True):
        row = locked.get(image.pk)
        if row is None or image.pk in already or row.status not in Image.PENDING:
            report.skipped.append(image.pk)
            continue
        new_predictions.append(_prediction_row(row, result, version, files[image.pk], timings))
        row.status, row.error, row.processed_at = Image.Status.DONE, "", now
        row.save(update_fields=["status", "error", "processed_at"])
        report.done.append(row.pk)
        per_case.setdefault(row.case_id, []).append(
            {
                "image": row.pk,
                "p": round(result.probability, 4),
                "label": result.model_label,
                "quality_ok": result.quality.ok,
            }
        )
    Prediction.objects.bulk_create(new_predictions)
    for case in Case.objects.filter(pk__in=per_case):
        audit_record(
            actor=None,
            action="analysis.finished",
            obj=case,
            case=case,
            after={"model_version": version.name, "results": per_case[case.pk]},
        )
        case_status_refresh(case=case)
    return [p.image_id for p in new_predictions]


def _save_results(cells: list[Image], results, version, timings: dict, report: AnalysisReport):
    started = time.perf_counter()
    files = _write_heatmaps(cells, results)
    timings = {
        **timings,
        "overlay_ms": round((time.perf_counter() - started) * 1000 / max(len(cells), 1), 2),
    }
    all_paths = [path for pair in files.values() for path in pair]
    try:
        recorded = set(_record_predictions(cells, results, files, version, timings, report))
    except BaseException:
        _delete_files(all_paths)
        raise
    _delete_files(path for pk, pair in files.items() if pk not in recorded for path in pair)
    # An image claimed before (a killed run) may have left heatmaps that were never recorded.
    for image in cells:
        if image.pk in recorded and image.attempts > 1:
            folder = file_folder(Prediction(image=image), "heatmap")
            _remove_leftovers(folder, [image.pk], set(files[image.pk]))


def _decode_all(cells: list[Image]) -> tuple[list[tuple[Image, np.ndarray]], dict[int, str]]:
    """Decode each cell; one that cannot be read fails alone (storage trouble is transient)."""

    def read(image: Image) -> np.ndarray | str:
        try:
            return _read_rgb(image)
        except TransientAnalysisError:
            raise
        except Exception as exc:  # any fault of this one image fails it, not its batch
            logger.warning("Cannot analyse image %s", image.pk, exc_info=True)
            return f"cannot analyse this image: {exc}"

    decoded: list[tuple[Image, np.ndarray]] = []
    failed: dict[int, str] = {}
    for image, outcome in zip(cells, _io_pool().map(read, cells), strict=True):
        if isinstance(outcome, str):
            failed[image.pk] = outcome
        else:
            decoded.append((image, outcome))
    return decoded, failed


def _infer(engine, decoded) -> tuple[list[tuple[Image, np.ndarray]], list, dict[int, str]]:
    """One forward pass for the batch; if it raises, each image alone, so that only the image
    that cannot be analysed fails."""
    try:
        return decoded, list(engine.analyse([rgb for _, rgb in decoded])), {}
    except TRANSIENT:
        raise
    except Exception as exc:
        if len(decoded) == 1:
            logger.warning("Analysis of image %s failed", decoded[0][0].pk, exc_info=True)
            return [], [], {decoded[0][0].pk: f"cannot analyse this image: {exc}"}
        logger.warning("A batch's forward pass failed; analysing its images one by one")
    kept, results, failed = [], [], {}
    for image, rgb in decoded:
        try:
            [result] = engine.analyse([rgb])
        except TRANSIENT:
            raise
        except Exception as exc:
            logger.warning("Analysis of image %s failed", image.pk, exc_info=True)
            failed[image.pk] = f"cannot analyse this image: {exc}"
            continue
        kept.append((image, rgb))
        results.append(result)
    return kept, results, failed


def _fail_each(failed: dict[int, str], report: AnalysisReport) -> None:
    for image_id, reason in failed.items():
        images_mark_failed(image_ids=[image_id], reason=reason)
    report.failed.update(failed)


def _analyse_cells(cells: list[Image], report: AnalysisReport) -> None:
    from classifier.runtime import active_engine

    version, engine = active_engine()
    started = time.perf_counter()
    decoded, failed = _decode_all(cells)
    decode_ms = (time.perf_counter() - started) * 1000 / max(len(cells), 1)
    _fail_each(failed, report)
    if not decoded:
        return
    started = time.perf_counter()
    decoded, results, failed = _infer(engine, decoded)
    _fail_each(failed, report)
    if not decoded:
        return
    infer_ms = (time.perf_counter() - started) * 1000 / len(decoded)
    timings = {
        "decode_ms": round(decode_ms, 2),
        "inference_ms": round(infer_ms, 2),
        "batch": len(decoded),
    }
    _save_results(
        [img for img, _ in decoded],
        [(rgb, res) for (_, rgb), res in zip(decoded, results, strict=True)],
        version,
        timings,
        report,
    )
    # The domain guard: per field and per case, once their last cell is in (cases.analysis.domain_guard).
    domain_check_cells(version=version, cells=[img for img, _ in decoded], results=results)


def _segment_or_fail(field_image: Image, report: AnalysisReport) -> list[int]:
    """The field's cell ids; a field that cannot be segmented fails alone, with its reason."""
    from classifier.detector import DetectorIntegrityError
    from classifier.runtime import NoActiveModelError

    try:
        return _segment_field(field_image, report)
    except TRANSIENT:
        raise
    except (DetectorIntegrityError, NoActiveModelError):
        raise  # permanent for every image until an admin acts: the task fails the batch
    except Exception as exc:  # e.g. an absurd size the detector refuses, an OpenCV error
        logger.warning("Cannot segment field image %s", field_image.pk, exc_info=True)
        _fail_each({field_image.pk: f"cannot segment: {exc}"}, report)
        return []


def _chunks(cells: list[Image], batch_size: int) -> list[list[Image]]:
    """Fresh cells in batches; cells claimed before (their run was killed) one at a time, last,
    so that a cell that crashes the worker takes no other cell down with it."""
    fresh = [img for img in cells if img.attempts <= 1]
    suspects = [[img] for img in cells if img.attempts > 1]
    return [fresh[i : i + batch_size] for i in range(0, len(fresh), batch_size)] + suspects


def images_analyse(*, image_ids: list[int], batch_size: int | None = None) -> AnalysisReport:
    """Analyse the given images: segment field images, classify cells, store heatmaps."""
    batch_size = batch_size or settings.ANALYSIS_BATCH_SIZE
    report = AnalysisReport()
    claimed = _mark_processing(image_ids)
    report.skipped.extend(sorted(set(image_ids) - {img.pk for img in claimed}))
    cells = [img for img in claimed if img.kind == Image.Kind.CELL]
    fields = [img for img in claimed if img.kind == Image.Kind.FIELD]
    for n, field_image in enumerate(fields):
        cells.extend(_mark_processing(_segment_or_fail(field_image, report)))
        _touch(fields[n + 1 :] + cells)
    chunks = _chunks(cells, batch_size)
    for n, chunk in enumerate(chunks):
        _analyse_cells(chunk, report)
        _touch([img for later in chunks[n + 1 :] for img in later])
    return report
