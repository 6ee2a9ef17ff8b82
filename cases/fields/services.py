"""Writes of the field view: a reviewer adds a missed cell, removes a false detection (or restores
it), and the clinician or reviewer enters the case's red-cell count.

Each function locks the case, checks who may do what and writes its CellCorrection and AuditEvent
in the same transaction. An added cell is a child Image like a detected one: cut from the field by
classifier.cells.cut_cell (the one crop function), stored before the transaction and queued for
analysis after it commits. The case stays awaiting review meanwhile, so the reviewer can go on
correcting the field; sign-off waits until the new cell has its result (cases.review.services).
"""

import io
import statistics

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.storage import default_storage
from django.db import transaction

from cases.access import can_write, is_reviewer, require_site_member
from cases.analysis import queue
from cases.audit.trail import audit_record
from cases.models import Case, CellCorrection, Image
from cases.review.services import case_lock, require_working_reviewer
from cases.storage import content_sha256, file_store

# Without detections to measure, an added cell's box is this fraction of the field's shorter side.
DEFAULT_CELL_FRACTION = 1 / 12
# A click this close to a marked cell's centre (in cell sizes) is a second click on that cell.
SAME_CELL_DISTANCE = 0.3
RED_CELLS_PER_UL_RANGE = (100_000, 10_000_000)


def typical_cell_size(field: Image) -> tuple[int, int]:
    """The median width and height of the field's cells, border cells and removed ones aside."""
    boxes = [
        img.bbox
        for img in field.cells.filter(removed=False, on_border=False, bbox__isnull=False)
        if img.bbox
    ]
    if not boxes:
        side = max(8, round(min(field.width, field.height) * DEFAULT_CELL_FRACTION))
        return side, side
    return (
        max(4, round(statistics.median(b["w"] for b in boxes))),
        max(4, round(statistics.median(b["h"] for b in boxes))),
    )


def _require_field(field: Image) -> None:
    if field.kind != Image.Kind.FIELD or field.parent_id is not None:
        raise ValidationError("Cells can be added only to a whole-field photograph.")


def _require_not_marked(field: Image, x: float, y: float, size: tuple[int, int]) -> None:
    reach = SAME_CELL_DISTANCE * max(size)
    for bbox in field.cells.filter(removed=False).values_list("bbox", flat=True):
        if bbox and abs(bbox["x"] + bbox["w"] / 2 - x) < reach:
            if abs(bbox["y"] + bbox["h"] / 2 - y) < reach:
                raise ValidationError("A cell is already marked here.")


def _cut_and_store(field: Image, box) -> tuple[str, bytes, int, int]:
    from PIL import Image as PILImage

    from classifier.cells import cut_cell
    from classifier.preprocess import decode_image

    with default_storage.open(field.file.name, "rb") as handle:
        rgb = decode_image(handle.read())
    crop = cut_cell(rgb, box)
    buffer = io.BytesIO()
    PILImage.fromarray(crop).save(buffer, format="PNG")
    data = buffer.getvalue()
    path = file_store(Image(case_id=field.case_id, parent=field), "file", "added.png", data)
    return path, data, crop.shape[1], crop.shape[0]


def _check_cell_add(field: Image, x: float, y: float) -> tuple[int, int]:
    _require_field(field)
    if not (0 <= x < field.width and 0 <= y < field.height):
        raise ValidationError("Click inside the photograph.")
    size = typical_cell_size(field)
    _require_not_marked(field, x, y, size)
    return size


def cell_add(*, field: Image, x: float, y: float, by) -> Image:
    """Add a missed cell centred on (x, y), in the field's pixels, sized like its other cells."""
    from classifier.cells import CellBox, clip_box, touches_border

    case = _case_now(field.case)
    require_working_reviewer(by, case)
    w, h = _check_cell_add(field, x, y)
    left, top = x - w / 2, y - h / 2
    on_border = touches_border(left, top, w, h, field.width, field.height)
    box = CellBox(*clip_box(left, top, w, h, field.width, field.height), score=1.0)
    # Decoding and storage happen before the transaction: the case is locked only briefly.
    path, data, width, height = _cut_and_store(field, box)
    try:
        with transaction.atomic():
            case = case_lock(field.case)
            require_working_reviewer(by, case)
            _check_cell_add(field, x, y)
            cell = _create_added_cell(field, box, on_border, path, data, width, height, by)
    except Exception:
        default_storage.delete(path)
        raise
    return cell


def _case_now(case: Case) -> Case:
    """The case as it is now, for the checks made before any file is written."""
    return Case.objects.select_related("patient__site").get(pk=case.pk)


def _create_added_cell(field, box, on_border, path, data, width, height, by) -> Image:
    number = field.cells.count() + 1
    cell = Image(
        case_id=field.case_id,
        parent=field,
        bbox={"x": box.x, "y": box.y, "w": box.w, "h": box.h},
        on_border=on_border,
        file=path,
        original_name=f"{field.original_name} cell {number} (added)"[:255],
        kind=Image.Kind.CELL,
        sha256=content_sha256(data),
        width=width,
        height=height,
        # The uploader's, not the reviewer's: adding a cell must not make the reviewer an
        # uploader under the four-eyes rule.
        uploaded_by_id=field.uploaded_by_id,
        status=Image.Status.QUEUED,
    )
    cell.full_clean()
    cell.save()
    correction = _correct(field, cell, CellCorrection.Action.ADD, by)
    audit_record(
        actor=by,
        action="field.cell_added",
        obj=cell,
        case=field.case,
        after={
            "field": field.pk,
            "cell": cell.pk,
            "bbox": cell.bbox,
            "on_border": on_border,
            "correction": correction.pk,
        },
    )
    ids = [cell.pk]
    transaction.on_commit(lambda: queue.analysis_enqueue(ids))
    return cell


def _correct(field: Image, cell: Image, action: str, by) -> CellCorrection:
    correction = CellCorrection(field=field, cell=cell, action=action, reviewer=by)
    correction.full_clean()
    correction.save()
    return correction


@transaction.atomic
def cell_remove(*, cell: Image, by) -> Image:
    """Mark a detection (or an added cell) as not a cell: it leaves every count."""
    return _set_removed(cell, by, removed=True)


@transaction.atomic
def cell_restore(*, cell: Image, by) -> Image:
    """Undo a removal: the cell counts again."""
    return _set_removed(cell, by, removed=False)


def _set_removed(cell: Image, by, *, removed: bool) -> Image:
    case = case_lock(cell.case)
    require_working_reviewer(by, case)
    # of=("self",): PostgreSQL cannot lock the nullable side of the parent join.
    locked = Image.objects.select_for_update(of=("self",)).select_related("parent")
    cell = locked.get(pk=cell.pk, case=case)
    if cell.parent is None:
        raise ValidationError("Only cells of a field photograph can be removed or restored.")
    if cell.removed == removed:
        raise ValidationError(f"This cell is already {'removed' if removed else 'counted'}.")
    cell.removed = removed
    cell.save(update_fields=["removed"])
    action = CellCorrection.Action.REMOVE if removed else CellCorrection.Action.RESTORE
    correction = _correct(cell.parent, cell, action, by)
    audit_record(
        actor=by,
        action=f"field.cell_{'removed' if removed else 'restored'}",
        obj=cell,
        case=case,
        before={"field": cell.parent_id, "cell": cell.pk, "removed": not removed},
        after={
            "field": cell.parent_id,
            "cell": cell.pk,
            "removed": removed,
            "correction": correction.pk,
        },
    )
    return cell


def can_set_red_cell_count(user) -> bool:
    return can_write(user) or is_reviewer(user)


@transaction.atomic
def case_set_red_cell_count(*, case: Case, by, red_cells_per_ul: int | None) -> Case:
    """Store the patient's red-cell count per µL (None clears it); parasites/µL follow from it."""
    case = case_lock(case)
    require_site_member(by, case.patient.site)
    if not can_set_red_cell_count(by):
        raise PermissionDenied("Only clinicians, reviewers and lab admins can enter it.")
    if case.status == Case.Status.SIGNED_OFF:
        raise ValidationError("A signed-off case is locked.")
    low, high = RED_CELLS_PER_UL_RANGE
    if red_cells_per_ul is not None and not low <= red_cells_per_ul <= high:
        raise ValidationError(
            {"red_cells_per_ul": f"Enter red cells per µL between {low:,} and {high:,}."}
        )
    before = {"red_cells_per_ul": case.red_cells_per_ul}
    if before["red_cells_per_ul"] == red_cells_per_ul:
        return case
    case.red_cells_per_ul = red_cells_per_ul
    case.full_clean()
    case.save(update_fields=["red_cells_per_ul", "updated_at"])
    audit_record(
        actor=by,
        action="case.red_cell_count_set",
        obj=case,
        case=case,
        before=before,
        after={"red_cells_per_ul": red_cells_per_ul},
    )
    return case
