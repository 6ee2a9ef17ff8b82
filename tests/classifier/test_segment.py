"""Segmentation finds the cells of a field and crops them like NIH crops."""

import json

import numpy as np

from classifier.cells import CellBox, cut_cell
from classifier.segment import segment_cells
from classifier.synthetic import make_cell

CELL = 60  # synthetic crop size; the cell's disc is about 0.8 of it


def field_with_cells(rng: np.random.Generator, centres: list[tuple[int, int]]) -> np.ndarray:
    """A 480x640 slide background with synthetic cells pasted at the given centres."""
    field = np.clip(rng.normal([232, 228, 230], 3, (480, 640, 3)), 0, 255).astype(np.uint8)
    for cy, cx in centres:
        cell = make_cell(rng, parasitized=bool(rng.integers(2)), size=CELL)
        yy, xx = np.mgrid[0:CELL, 0:CELL]
        disc = (yy - CELL / 2) ** 2 + (xx - CELL / 2) ** 2 < (0.35 * CELL) ** 2
        patch = field[cy - CELL // 2 : cy + CELL // 2, cx - CELL // 2 : cx + CELL // 2]
        patch[disc] = cell[disc]
    return field


def iou(a: CellBox, b: tuple[int, int, int, int]) -> float:
    bx, by, bw, bh = b
    iw = max(0, min(a.x + a.w, bx + bw) - max(a.x, bx))
    ih = max(0, min(a.y + a.h, by + bh) - max(a.y, by))
    return iw * ih / (a.w * a.h + bw * bh - iw * ih)


def test_it_finds_each_separate_cell_with_a_tight_box(rng):
    centres = [(80, 80), (80, 300), (80, 520), (250, 180), (250, 420), (400, 100), (400, 540)]
    boxes = segment_cells(field_with_cells(rng, centres))
    assert len(boxes) == len(centres)
    radius = 0.35 * CELL
    for cy, cx in centres:
        truth = (round(cx - radius), round(cy - radius), round(2 * radius), round(2 * radius))
        assert max(iou(box, truth) for box in boxes) > 0.7


def test_it_splits_two_touching_cells(rng):
    boxes = segment_cells(field_with_cells(rng, [(200, 200), (200, 240), (100, 450), (350, 450)]))
    assert len(boxes) == 4


def test_a_blank_field_has_no_cells():
    assert segment_cells(np.full((300, 400, 3), 230, np.uint8)) == []


def test_crop_blacks_out_everything_but_the_cell(rng):
    field = field_with_cells(rng, [(100, 100), (300, 400)])
    box = min(segment_cells(field), key=lambda b: b.x)
    cell = cut_cell(field, box, pad=4)
    assert cell.shape == (box.h + 8, box.w + 8, 3)
    assert (cell[0, 0] == 0).all() and (cell[cell.shape[0] // 2, cell.shape[1] // 2] > 100).all()


def test_it_recalls_real_smear_cells(smears):
    from training.smears import count_matches, load_fields

    first_three = [
        e["image_name"] for e in json.loads((smears / "annotations.json").read_text())[:3]
    ]
    by_name = {field.name: field for field in load_fields(smears)}
    matched = total = 0
    for field in (by_name[name] for name in first_three):
        boxes = np.array([[b.x, b.y, b.w, b.h] for b in segment_cells(field.read())], float)
        matched, total = matched + count_matches(boxes, field.boxes), total + len(field.boxes)
    # Measured 0.21 on these three crowded fields (0.53 over all 141): a loose floor.
    assert matched / total >= 0.15
