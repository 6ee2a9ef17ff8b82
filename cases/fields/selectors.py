"""Reads of the field view: a field photograph with its cells, their counts, and a case's fields.

Every count comes from cases.summary.case_summary (the one count function); this module only adds
what follows from it: parasites/µL from the case's red-cell count and progress toward the target
cell count (settings.TARGET_CELL_COUNT).
"""

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.http import Http404
from django.urls import reverse

from cases.access import is_reviewer
from cases.intake.selectors import case_images, image_get
from cases.models import Case, CellCorrection, Image
from cases.review.selectors import four_eyes_blocked
from cases.summary import case_summary, is_counted_cell, prediction_of

# The review page's inset shows this many cell sizes of the field around the cell.
CONTEXT_CELLS = 4


def field_get(user: AbstractBaseUser, image_id: int) -> Image:
    """A whole-field photograph the user may see; 404 for anything else."""
    image = image_get(user, image_id)
    if image.kind != Image.Kind.FIELD or image.parent_id is not None:
        raise Http404("Not a field photograph.")
    return image


def field_cells(field: Image) -> list[Image]:
    return list(
        field.cells.select_related("prediction", "prediction__model_version").order_by("id")
    )


def counts_of(images: list[Image], case: Case) -> dict:
    """case_summary's counts plus parasites/µL and progress toward the target cell count."""
    summary = case_summary(images, margin=settings.ANALYSIS_UNCERTAIN_MARGIN)
    target = settings.TARGET_CELL_COUNT
    fraction = summary["parasitized_fraction"]
    per_ul = case.red_cells_per_ul
    density = None
    if per_ul and fraction is not None:
        density = {
            "value": fraction * per_ul,
            "ci95": [x * per_ul for x in summary["ci95"]],
            "red_cells_per_ul": per_ul,
        }
    return {
        **summary,
        "parasites_per_ul": density,
        "target_cells": target,
        "target_progress": min(1.0, summary["counted"] / target),
        "target_reached": summary["counted"] >= target,
        # Shown beside the counts, never in them (cases.summary.is_counted_cell).
        "on_border": sum(img.on_border and not img.removed for img in images),
        "removed": sum(img.removed for img in images),
    }


def _cell_payload(cell: Image, added: set[int]) -> dict:
    prediction = prediction_of(cell)
    return {
        "id": cell.pk,
        "bbox": cell.bbox,
        "on_border": cell.on_border,
        "removed": cell.removed,
        "added": cell.pk in added,
        "counted": is_counted_cell(cell) and prediction is not None and prediction.quality_ok,
        "status": cell.status,
        "status_label": cell.get_status_display(),
        "detection_score": cell.detection_score,
        "probability": prediction.probability if prediction else None,
        "label": prediction.label if prediction else None,
        "threshold": prediction.threshold if prediction else None,
        "quality_ok": prediction.quality_ok if prediction else None,
        "quality_flags": prediction.quality_flags if prediction else [],
        "file_url": reverse("image_file", args=[cell.pk]),
        "heatmap_url": reverse("image_heatmap", args=[cell.pk])
        if prediction and prediction.heatmap
        else None,
        "remove_url": reverse("field_cell_remove", args=[cell.pk]),
        "restore_url": reverse("field_cell_restore", args=[cell.pk]),
    }


def can_edit_field(user: AbstractBaseUser, case: Case) -> bool:
    """Whether the field view offers adding and removing cells (the services check again)."""
    return (
        is_reviewer(user)
        and case.status == Case.Status.AWAITING_REVIEW
        and case.assigned_reviewer_id == user.pk
        and not four_eyes_blocked(case, user)
    )


def field_payload(field: Image) -> dict:
    """The field, its cells and the field's and the case's counts, for the page and its script."""
    case = field.case
    cells = field_cells(field)
    added = set(
        CellCorrection.objects.filter(field=field, action=CellCorrection.Action.ADD).values_list(
            "cell_id", flat=True
        )
    )
    return {
        "field": {
            "id": field.pk,
            "name": str(field),
            "width": field.width,
            "height": field.height,
            "status": field.status,
            "error": field.error,
            "file_url": reverse("image_file", args=[field.pk]),
            "data_url": reverse("field_data", args=[field.pk]),
            "add_url": reverse("field_cell_add", args=[field.pk]),
        },
        "cells": [_cell_payload(cell, added) for cell in cells],
        "counts": {
            "field": counts_of(cells, case),
            "case": counts_of(list(case_images(case)), case),
        },
        "done": all(c.status not in Image.PENDING for c in cells)
        and field.status not in Image.PENDING,
    }


def case_fields_panel(case: Case) -> dict:
    """The case page's field list: each photograph with its counts, and the case's counts."""
    images = list(case_images(case))
    fields = [img for img in images if img.kind == Image.Kind.FIELD and img.parent_id is None]
    by_field: dict[int, list[Image]] = {f.pk: [] for f in fields}
    for img in images:
        if img.parent_id in by_field:
            by_field[img.parent_id].append(img)
    return {
        "case_counts": counts_of(images, case),
        "fields": [
            {
                "image": f,
                "url": reverse("field_view", args=[f.pk]),
                "file_url": reverse("image_file", args=[f.pk]),
                "counts": counts_of(by_field[f.pk], case),
                "detected": len(by_field[f.pk]),
            }
            for f in fields
        ],
    }


def field_context(cell: Image, fields: dict[int, Image]) -> dict | None:
    """Where a cell crop lies in its field: the inset on the review page (no query)."""
    field = fields.get(cell.parent_id)
    if field is None or not cell.bbox:
        return None
    b = cell.bbox
    side = min(max(field.width, field.height), CONTEXT_CELLS * max(b["w"], b["h"]))
    x = min(max(0, b["x"] + b["w"] / 2 - side / 2), max(0, field.width - side))
    y = min(max(0, b["y"] + b["h"] / 2 - side / 2), max(0, field.height - side))
    return {
        "url": f"{reverse('field_view', args=[field.pk])}?cell={cell.pk}",
        "file_url": reverse("image_file", args=[field.pk]),
        "width": field.width,
        "height": field.height,
        "viewbox": f"{x:.0f} {y:.0f} {side:.0f} {side:.0f}",
        "bbox": b,
    }


def attach_field_context(items: list[dict], images: list[Image]) -> None:
    """Give each review-grid item whose image was cut from a field its field context."""
    fields = {img.pk: img for img in images if img.kind == Image.Kind.FIELD}
    for item in items:
        item["field_context"] = field_context(item["image"], fields)


@dataclass(frozen=True)
class ReviewedField:
    """A field photograph whose cells a reviewer corrected, for detector retraining.

    `file` is the photograph's name in the default storage (open it with default_storage.open);
    `boxes` are its cells after review: the detections minus the removed ones plus the added ones,
    as {"x", "y", "w", "h", "on_border"} in the photograph's pixels.
    """

    image_id: int
    case_id: int
    file: str
    width: int
    height: int
    boxes: list[dict]


def reviewed_field_boxes() -> list[ReviewedField]:
    """Every field with at least one reviewer correction, with its corrected cell boxes.

    For `train_detector --include-reviewed`: the whole corrected list, not only the corrections,
    since a reviewer who added or removed a cell has looked at the field's other detections too.
    Two queries whatever the number of fields.
    """
    field_ids = CellCorrection.objects.values_list("field_id", flat=True).distinct()
    fields = Image.objects.filter(pk__in=field_ids).order_by("id")
    cells: dict[int, list[dict]] = {}
    rows = Image.objects.filter(parent__in=fields, removed=False, bbox__isnull=False).order_by("id")
    for parent_id, bbox, on_border in rows.values_list("parent_id", "bbox", "on_border"):
        box = {k: bbox[k] for k in ("x", "y", "w", "h")}
        cells.setdefault(parent_id, []).append({**box, "on_border": on_border})
    return [
        ReviewedField(f.pk, f.case_id, f.file.name, f.width, f.height, cells.get(f.pk, []))
        for f in fields
    ]
