"""The worker-side analysis service: images in the database -> predictions and heatmaps.

Called by the thin Celery task in cases.analysis.tasks with image ids. Idempotent: it computes only what is
missing (images not yet done or failed, fields not yet segmented) and a Prediction is created only
while holding the image's row lock, so a redelivered or concurrent task never duplicates a result.
Heavy work (decoding, the forward pass, PNG encoding, storage writes) happens outside transactions.
"""

import functools
import hashlib
import io
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from PIL import Image as PILImage

from cases.analysis.domain_guard import domain_check_cells
from cases.analysis.status import case_status_refresh
from cases.audit.trail import audit_record
from cases.models import Case, Image, Prediction

logger = logging.getLogger(__name__)
PENDING = (Image.Status.QUEUED, Image.Status.PROCESSING)


@functools.cache
def _io_pool() -> ThreadPoolExecutor:
    """Threads for decoding and PNG encoding (created lazily, once per worker process)."""
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="analysis-io")


class TransientAnalysisError(RuntimeError):
    """Storage or database trouble that a retry may fix."""


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
        raise TransientAnalysisError(f"cannot read {image.file.name}: {exc}") from exc
    return decode_image(data)


@transaction.atomic
def images_mark_failed(*, image_ids: list[int], reason: str) -> list[int]:
    """Mark images that are still pending as failed, with a readable reason (and audit it)."""
    images = list(
        Image.objects.select_for_update()
        .filter(pk__in=image_ids, status__in=PENDING)
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


def _claim(image_ids: list[int]) -> list[Image]:
    """Pending images of this batch, marked PROCESSING. Done or failed ones are left alone."""
    Image.objects.filter(pk__in=image_ids, status=Image.Status.QUEUED).update(
        status=Image.Status.PROCESSING
    )
    return list(
        Image.objects.filter(pk__in=image_ids, status=Image.Status.PROCESSING)
        .select_related("case")
        .order_by("pk")
    )


def _segment_field(image: Image, report: AnalysisReport) -> list[int]:
    """Detect the cells of a whole-field image and store each as a crop (a child image, cut by
    classifier.cells.cut_cell); returns the children's ids. Cells cut by the field's edge are
    stored flagged on_border: drawn on the field, never counted."""
    from classifier.cells import cut_cell
    from classifier.runtime import active_detector

    existing = list(image.cells.values_list("pk", flat=True))
    if existing:  # detected by an earlier, interrupted run: do not cut it twice
        return existing
    detector_version, detector = active_detector()
    rgb = _read_rgb(image)
    started = time.perf_counter()
    boxes = detector.detect(rgb)
    detect_ms = round((time.perf_counter() - started) * 1000, 1)
    pending: list[tuple] = []  # (CellBox, stored path, PNG bytes, width, height)
    for box in boxes:
        cell = cut_cell(rgb, box)
        buffer = io.BytesIO()
        PILImage.fromarray(cell).save(buffer, format="PNG", compress_level=1)
        data = buffer.getvalue()
        path = default_storage.save(
            f"cases/{image.case_id}/cells/{image.pk}-{uuid.uuid4().hex}.png", ContentFile(data)
        )
        pending.append((box, path, data, cell.shape[1], cell.shape[0]))
    with transaction.atomic():
        locked = Image.objects.select_for_update().get(pk=image.pk)
        if locked.cells.exists():
            for _, path, *_ in pending:
                default_storage.delete(path)
            return list(locked.cells.values_list("pk", flat=True))
        children = Image.objects.bulk_create(
            [
                Image(
                    case_id=image.case_id,
                    parent=image,
                    bbox={"x": box.x, "y": box.y, "w": box.w, "h": box.h},
                    on_border=box.on_border,
                    detection_score=round(box.score, 4),
                    file=path,
                    original_name=f"{image.original_name} cell {n + 1}",
                    kind=Image.Kind.CELL,
                    sha256=hashlib.sha256(data).hexdigest(),
                    width=width,
                    height=height,
                    uploaded_by_id=image.uploaded_by_id,
                    status=Image.Status.PROCESSING,
                )
                for n, (box, path, data, width, height) in enumerate(pending)
            ]
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
                "on_border": int(sum(bool(box.on_border) for box, *_ in pending)),
                "detector": detector_version.name,
                "detect_ms": detect_ms,
            },
        )
    report.segmented[image.pk] = len(children)
    return [child.pk for child in children]


def _save_results(cells: list[Image], results, version, timings: dict, report: AnalysisReport):
    from classifier.overlay import heatmap_png, overlay_png

    started = time.perf_counter()

    def write(item) -> tuple[str, str]:
        image, (rgb, result) = item
        stem = f"cases/{image.case_id}/heatmaps/{image.pk}-{uuid.uuid4().hex[:8]}"
        overlay = default_storage.save(
            f"{stem}-overlay.png", ContentFile(overlay_png(rgb, result.heatmap))
        )
        raw = default_storage.save(f"{stem}-raw.png", ContentFile(heatmap_png(result.heatmap)))
        return overlay, raw

    # PNG encoding and file writes release the GIL: two threads keep both cores busy.
    paths = list(_io_pool().map(write, zip(cells, results, strict=True)))
    files = {image.pk: pair for image, pair in zip(cells, paths, strict=True)}
    timings = {
        **timings,
        "overlay_ms": round((time.perf_counter() - started) * 1000 / max(len(cells), 1), 2),
    }
    orphans: list[str] = []
    with transaction.atomic():
        locked = {
            img.pk: img
            for img in Image.objects.select_for_update().filter(pk__in=[c.pk for c in cells])
        }
        already = set(
            Prediction.objects.filter(image_id__in=locked).values_list("image_id", flat=True)
        )
        now = timezone.now()
        per_case: dict[int, list[dict]] = {}
        new_predictions = []
        for image, (_, result) in zip(cells, results, strict=True):
            row = locked.get(image.pk)
            if row is None or image.pk in already or row.status not in PENDING:
                orphans.extend(files[image.pk])
                report.skipped.append(image.pk)
                continue
            overlay_path, raw_path = files[image.pk]
            new_predictions.append(
                Prediction(
                    image=row,
                    model_version=version,
                    probability=result.probability,
                    label=result.model_label,
                    threshold=version.threshold,
                    heatmap=overlay_path,
                    heatmap_raw=raw_path,
                    quality_ok=result.quality.ok,
                    quality_flags=list(result.quality.flags),
                    quality_metrics=dict(result.quality.metrics),
                    timings=timings,
                )
            )
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
    for path in orphans:
        default_storage.delete(path)


def _analyse_cells(cells: list[Image], report: AnalysisReport) -> None:
    from classifier.preprocess import ImageDecodeError
    from classifier.runtime import active_engine

    version, engine = active_engine()
    started = time.perf_counter()
    decoded: list[tuple[Image, np.ndarray]] = []
    failed: dict[int, str] = {}

    def read(image: Image) -> np.ndarray | str:
        try:
            return _read_rgb(image)
        except (ImageDecodeError, ValueError) as exc:
            return f"cannot analyse this image: {exc}"

    for image, outcome in zip(cells, _io_pool().map(read, cells), strict=True):
        if isinstance(outcome, str):
            failed[image.pk] = outcome
        else:
            decoded.append((image, outcome))
    decode_ms = (time.perf_counter() - started) * 1000 / max(len(cells), 1)
    for image_id, reason in failed.items():
        images_mark_failed(image_ids=[image_id], reason=reason)
    report.failed.update(failed)
    if not decoded:
        return
    started = time.perf_counter()
    results = engine.analyse([rgb for _, rgb in decoded])
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


def analyse_images(*, image_ids: list[int], batch_size: int | None = None) -> AnalysisReport:
    """Analyse the given images: segment field images, classify cells, store heatmaps."""
    batch_size = batch_size or settings.ANALYSIS_BATCH_SIZE
    report = AnalysisReport()
    claimed = _claim(image_ids)
    report.skipped.extend(sorted(set(image_ids) - {img.pk for img in claimed}))
    cells = [img for img in claimed if img.kind == Image.Kind.CELL]
    for field_image in (img for img in claimed if img.kind == Image.Kind.FIELD):
        try:
            child_ids = _segment_field(field_image, report)
        except ValueError as exc:
            images_mark_failed(image_ids=[field_image.pk], reason=f"cannot segment: {exc}")
            report.failed[field_image.pk] = str(exc)
            continue
        cells.extend(_claim(child_ids))
    for start in range(0, len(cells), batch_size):
        _analyse_cells(cells[start : start + batch_size], report)
    return report
