"""A case built to trip every way two counts could disagree, and a PDF text reader.

Uploaded cells (one parasitized call flagged by the quality gate, one near the threshold), a
failed upload, and a field photograph with three detected cells, one of them cut by the field's
edge (drawn, never counted). Used by tests/cases/test_one_count.py and the browser test.
"""

import base64
import hashlib
import re
import zlib

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from cases.analysis.status import case_status_refresh
from cases.models import Case, Image
from tests.cases.review_helpers import add_cells, model_version
from tests.cases.web_helpers import cell_png, predict

# Uploaded cells: 2 clear positives, 1 near the threshold (0.55), 4 negatives.
CELL_PROBABILITIES = [0.95, 0.9, 0.55, 0.05, 0.1, 0.2, 0.3]
# The quality gate flags one parasitized call: shown, never counted by the AI.
FLAGGED_PROBABILITY = 0.99
# Detected on the field photograph: inside the field, then one cut by its edge.
FIELD_CELLS = [(0.8, False), (0.1, False), (0.97, True)]

# What every page and report must say about the AI's counts.
EXPECTED = {
    "field_photographs": 1,
    "predicted": 10,  # 7 + 1 flagged + 2 field cells inside the field
    "counted": 9,
    "parasitized": 4,  # 0.95, 0.9, 0.55, 0.8
    "uninfected": 5,
    "quality_flagged": 1,
    "near_threshold": 1,
}


def _field(case: Case, by) -> Image:
    digest = hashlib.sha256(f"field-{case.pk}".encode()).hexdigest()
    name = default_storage.save(f"cases/{case.pk}/images/field.png", ContentFile(cell_png(7)))
    return Image.objects.create(
        case=case,
        file=name,
        original_name="C137P98ThinF_IMG_20151005_field.png",
        kind=Image.Kind.FIELD,
        sha256=digest,
        width=640,
        height=480,
        uploaded_by=by,
        status=Image.Status.DONE,
    )


def mixed_case(case: Case, by) -> Case:
    """Fill `case` (see the module docstring); it ends awaiting review."""
    add_cells(case, by, CELL_PROBABILITIES, files=True)
    add_cells(case, by, [FLAGGED_PROBABILITY], quality_ok=[False], files=True, failed=1)
    field = _field(case, by)
    version = model_version()
    for i, (probability, on_border) in enumerate(FIELD_CELLS):
        name = default_storage.save(
            f"cases/{case.pk}/images/field-cell-{i}.png", ContentFile(cell_png(100 + i))
        )
        cell = Image.objects.create(
            case=case,
            parent=field,
            bbox={"x": 0, "y": 0, "w": 20, "h": 40}
            if on_border
            else {"x": 60 * (i + 1), "y": 100, "w": 40, "h": 40},
            on_border=on_border,
            detection_score=0.9,
            file=name,
            original_name=f"field-cell-{i}.png",
            kind=Image.Kind.CELL,
            sha256=hashlib.sha256(f"fc-{case.pk}-{i}".encode()).hexdigest(),
            width=40,
            height=40,
            uploaded_by=by,
            status=Image.Status.DONE,
        )
        # A border cell is never classified by the worker; one that somehow had a result
        # must still stay out of every count.
        predict(cell, version, probability, heatmaps=True)
    with transaction.atomic():
        case_status_refresh(case=case, by=by)
    case.refresh_from_db()
    return case


def pdf_text(pdf: bytes) -> str:
    """The text drawn on a PDF's pages (reportlab output, compressed or not), in order."""
    streams = re.findall(rb"stream\r?\n(.*?)\s*endstream", pdf, re.S)
    chunks = []
    for raw in streams:
        if raw.rstrip().endswith(b"~>"):  # reportlab's ASCII85 layer over Flate
            raw = base64.a85decode(raw.strip()[:-2])
        try:
            raw = zlib.decompress(raw)
        except zlib.error:
            pass
        for match in re.finditer(rb"\(((?:\\.|[^\\)])*)\)\s*Tj", raw):
            text = re.sub(rb"\\([()\\])", rb"\1", match.group(1))
            chunks.append(text.decode("latin-1"))
    return " ".join(" ".join(chunks).split())
