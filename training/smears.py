"""Annotated field photographs in the IML-Malaria layout: reading, a field-grouped split, and the
detection metrics (matching at IoU 0.5, count error, parasitemia) used by evaluate_detector and
bench/segmentation.py.

A folder holds ``annotations.json`` — a list of ``{"image_name", "objects": [{"type", "bbox":
{"x", "y", "w", "h"}}]}``, numbers possibly as strings, x/y the top-left corner — and the
photographs under ``images/``. Every annotated box is a red cell (``red blood cell``, the
parasite stages and ``difficult`` alike); the stages are parasitized. No Django or TensorFlow.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path

import numpy as np

from classifier.cells import touches_border
from classifier.preprocess import decode_image

PARASITE_STAGES = frozenset({"ring", "trophozoite", "schizont", "gametocyte"})
UNINFECTED_TYPES = frozenset({"red blood cell"})
IOU_THRESHOLD = 0.5


@dataclass(frozen=True)
class AnnotatedField:
    """One photograph and its boxes (n, 4: x, y, w, h) with each box's annotated type."""

    path: Path
    name: str
    boxes: np.ndarray
    types: tuple[str, ...]
    train_only: bool = False  # an entry marked "split": "train" (e.g. reviewer-corrected fields)

    def read(self) -> np.ndarray:
        return decode_image(self.path.read_bytes())

    @property
    def parasitized(self) -> np.ndarray:
        return np.array([t in PARASITE_STAGES for t in self.types], bool)

    def counted(self, width: int, height: int) -> np.ndarray:
        """Per box: the cell is not cut by the image's edge (a count includes it)."""
        return ~self.on_border(width, height)

    def on_border(self, width: int, height: int) -> np.ndarray:
        """Per box: the cell is cut by the image's edge (a count leaves it out)."""
        return np.array([touches_border(*b, width, height) for b in self.boxes], bool)


def is_smear_folder(folder: str | Path) -> bool:
    return (Path(folder) / "annotations.json").is_file()


def load_fields(folder: str | Path) -> list[AnnotatedField]:
    """Every annotated photograph of a folder, sorted by file name."""
    folder = Path(folder)
    entries = json.loads((folder / "annotations.json").read_text())
    fields = []
    for entry in entries:
        rows = [[float(o["bbox"][k]) for k in ("x", "y", "w", "h")] for o in entry["objects"]]
        types = tuple(str(o.get("type", "red blood cell")) for o in entry["objects"])
        path = folder / "images" / entry["image_name"]  # an absolute image_name stays as it is
        boxes = np.array(rows, dtype=np.float64).reshape(-1, 4)
        train_only = entry.get("split") == "train"
        fields.append(AnnotatedField(path, entry["image_name"], boxes, types, train_only))
    return sorted(fields, key=lambda f: f.name)


def split_fields(
    fields: Sequence[AnnotatedField], val_fraction: float
) -> tuple[list[AnnotatedField], list[AnnotatedField]]:
    """(training, validation): the last val_fraction of the fields in name order; fields marked
    train_only always train.

    Photographs are numbered as they were taken, so neighbouring names are neighbouring shots of
    one slide (one patient, one staining): a contiguous block keeps a slide on one side, where a
    random split would leak it into both.
    """
    always = [f for f in fields if f.train_only]
    ordered = sorted((f for f in fields if not f.train_only), key=lambda f: f.name)
    n_val = int(round(len(ordered) * val_fraction))
    if val_fraction > 0 and len(ordered) > 1:
        n_val = min(max(1, n_val), len(ordered) - 1)
    cut = len(ordered) - n_val
    return ordered[:cut] + always, ordered[cut:]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (n, 4: x, y, w, h) with every box in b (m, 4)."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    ax0, ay0, ax1, ay1 = a[:, 0], a[:, 1], a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx0, by0, bx1, by1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax1[:, None], bx1) - np.maximum(ax0[:, None], bx0), 0, None)
    ih = np.clip(np.minimum(ay1[:, None], by1) - np.maximum(ay0[:, None], by0), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + b[:, 2] * b[:, 3] - inter
    return inter / np.maximum(union, 1e-9)


def match_boxes(
    predicted: np.ndarray, truth: np.ndarray, threshold: float = IOU_THRESHOLD
) -> list[tuple[int, int]]:
    """One-to-one (predicted index, true index) pairs, greedily by falling IoU >= threshold."""
    if not len(predicted) or not len(truth):
        return []
    iou = iou_matrix(predicted, truth)
    pairs = []
    candidates = np.argwhere(iou >= threshold)
    order = np.argsort(-iou[candidates[:, 0], candidates[:, 1]], kind="stable")
    used_p, used_t = set(), set()
    for i, j in candidates[order]:
        if i in used_p or j in used_t:
            continue
        used_p.add(int(i))
        used_t.add(int(j))
        pairs.append((int(i), int(j)))
    return pairs


def count_matches(
    predicted: np.ndarray, truth: np.ndarray, threshold: float = IOU_THRESHOLD
) -> int:
    return len(match_boxes(predicted, truth, threshold))


@dataclass
class DetectionTally:
    """Running totals of a detection evaluation over fields.

    Besides precision and recall over every box, the same restricted to cells not cut by the
    image's edge ("interior"): annotators box edge cells inconsistently, and the count (what a
    lab reads) leaves them out anyway.
    """

    fields: int = 0
    true_positives: int = 0
    predicted: int = 0
    annotated: int = 0
    interior_predicted: int = 0
    interior_predicted_matched: int = 0
    interior_annotated: int = 0
    interior_annotated_matched: int = 0
    count_errors: list = dataclass_field(default_factory=list)

    def add(
        self,
        predicted: np.ndarray,
        predicted_border: np.ndarray,
        truth: np.ndarray,
        truth_border: np.ndarray,
    ) -> None:
        pairs = match_boxes(predicted, truth)
        predicted_border = np.asarray(predicted_border, bool).reshape(-1)
        truth_border = np.asarray(truth_border, bool).reshape(-1)
        self.fields += 1
        self.true_positives += len(pairs)
        self.predicted += len(predicted)
        self.annotated += len(truth)
        self.interior_predicted += int((~predicted_border).sum())
        self.interior_annotated += int((~truth_border).sum())
        self.interior_predicted_matched += sum(not predicted_border[i] for i, _ in pairs)
        self.interior_annotated_matched += sum(not truth_border[j] for _, j in pairs)
        counted_pred, counted_true = int((~predicted_border).sum()), int((~truth_border).sum())
        self.count_errors.append(100.0 * abs(counted_pred - counted_true) / max(counted_true, 1))

    def summary(self) -> dict:
        precision = self.true_positives / max(self.predicted, 1)
        recall = self.true_positives / max(self.annotated, 1)
        interior_precision = self.interior_predicted_matched / max(self.interior_predicted, 1)
        interior_recall = self.interior_annotated_matched / max(self.interior_annotated, 1)
        return {
            "images": self.fields,
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(2 * precision * recall / max(precision + recall, 1e-9), 4),
            "interior_precision": round(interior_precision, 4),
            "interior_recall": round(interior_recall, 4),
            "interior_f1": round(
                2
                * interior_precision
                * interior_recall
                / max(interior_precision + interior_recall, 1e-9),
                4,
            ),
            "count_error_pct": round(float(np.mean(self.count_errors or [0.0])), 2),
            "annotated_cells": self.annotated,
            "detected_cells": self.predicted,
            "iou_threshold": IOU_THRESHOLD,
        }


def cell_examples(fields: Sequence[AnnotatedField]) -> list:
    """Every annotated cell of the fields as a training Example, cut by classifier.cells.cut_cell
    exactly as the field path cuts detected cells at serving time (PNG bytes in memory).

    Parasite stages are label 1, 'red blood cell' label 0; 'difficult' boxes are left out. The
    group is the field, so a field's cells stay on one side of a split.
    """
    import io

    from PIL import Image as PILImage

    from classifier.cells import CellBox, clip_box, cut_cell
    from training.data import Example

    examples = []
    for field in fields:
        rgb = field.read()
        height, width = rgb.shape[:2]
        for box, kind in zip(field.boxes, field.types, strict=True):
            if kind not in PARASITE_STAGES and kind not in UNINFECTED_TYPES:
                continue
            cell = cut_cell(rgb, CellBox(*clip_box(*box, width, height)))
            buffer = io.BytesIO()
            PILImage.fromarray(cell).save(buffer, format="PNG", compress_level=1)
            parasitized = kind in PARASITE_STAGES
            examples.append(
                Example(
                    buffer.getvalue(),
                    int(parasitized),
                    f"field:{field.name}",
                    origin="smear",
                    stage=kind if parasitized else "",
                )
            )
    return examples
