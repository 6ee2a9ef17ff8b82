"""A field photograph with detected cells, written directly as the worker would leave it."""

import hashlib
import io

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from PIL import Image as PILImage

from cases.analysis.status import case_status_refresh
from cases.models import Case, Image
from tests.cases.review_helpers import model_version
from tests.cases.web_helpers import predict

FIELD_W, FIELD_H = 400, 300
CELL = 40
# (x, y) of each cell's box; the last one is cut by the right-hand edge.
BOXES = [(40, 40), (120, 40), (200, 40), (40, 140), (120, 140), (380, 200)]


def field_png(width: int = FIELD_W, height: int = FIELD_H) -> bytes:
    rng = np.random.default_rng(3)
    rgb = np.full((height, width, 3), 225, np.uint8)
    yy, xx = np.mgrid[:height, :width]
    for x, y in BOXES + [(280, 140)]:  # (280, 140): a cell the detector missed
        inside = (xx - x - CELL / 2) ** 2 + (yy - y - CELL / 2) ** 2 < (CELL / 2) ** 2
        rgb[inside] = (200, 120, 160)
    rgb = np.clip(rgb + rng.integers(-5, 6, rgb.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def add_field(
    case: Case,
    by,
    probabilities: list[float | None],
    *,
    name: str = "field-1.png",
    quality_ok: list[bool] | None = None,
) -> tuple[Image, list[Image]]:
    """A field (kind=field) and one child cell per probability (None: still queued), bbox from
    BOXES; the last box lies on the border. Then the case's status is derived as usual."""
    data = field_png()
    path = default_storage.save(f"cases/{case.pk}/images/{name}", ContentFile(data))
    field = Image.objects.create(
        case=case,
        file=path,
        original_name=name,
        kind=Image.Kind.FIELD,
        sha256=hashlib.sha256(data + name.encode()).hexdigest(),
        width=FIELD_W,
        height=FIELD_H,
        uploaded_by=by,
        status=Image.Status.DONE,
    )
    version = model_version()
    cells = []
    for n, probability in enumerate(probabilities):
        x, y = BOXES[n % len(BOXES)]
        on_border = x + CELL >= FIELD_W - 2
        w = FIELD_W - x if on_border else CELL
        cell = Image.objects.create(
            case=case,
            parent=field,
            bbox={"x": x, "y": y, "w": w, "h": CELL},
            on_border=on_border,
            detection_score=0.9,
            file=default_storage.save(
                f"cases/{case.pk}/cells/{field.pk}-{n}.png", ContentFile(data)
            ),
            original_name=f"{name} cell {n + 1}",
            kind=Image.Kind.CELL,
            sha256=hashlib.sha256(f"{field.pk}-{n}".encode()).hexdigest(),
            width=w,
            height=CELL,
            uploaded_by=by,
            status=Image.Status.QUEUED if probability is None else Image.Status.PROCESSING,
        )
        if probability is not None:
            ok = True if quality_ok is None else quality_ok[n]
            predict(cell, version, probability, quality_ok=ok)
        cells.append(cell)
    with transaction.atomic():
        case_status_refresh(case=case, by=by)
    case.refresh_from_db()
    return field, cells
