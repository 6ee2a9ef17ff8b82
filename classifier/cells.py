"""A detected cell and the one function that cuts it out of its field for the classifier.

Both the field path at serving time (cases.analysis.services) and the training data cut from annotated
fields (training.smears) call cut_cell(), so the classifier sees cells masked and padded the same
way in training and in use. No Django or TensorFlow imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

# The mask is an ellipse inscribed in the box, grown a little so the cell's own rim survives;
# beyond it the crop is black, the way the NIH crops look (one cell on a black background).
MASK_GROWTH = 1.08
BORDER_MARGIN_PX = 2  # a box this close to the image's edge belongs to a cell cut by the edge


@dataclass(frozen=True)
class CellBox:
    """A cell's bounding box in the field's pixels.

    score: the detector's confidence (1.0 for annotated or classical boxes); on_border: the cell is
    cut by the image's edge, so it is shown but not counted; mask: an explicit cell mask inside
    the box (classical segmentation), else the inscribed ellipse is used.
    """

    x: int
    y: int
    w: int
    h: int
    score: float = 1.0
    on_border: bool = False
    mask: np.ndarray | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict:
        out = {"x": self.x, "y": self.y, "w": self.w, "h": self.h}
        if self.on_border:
            out["border"] = True
        return out


def touches_border(x: float, y: float, w: float, h: float, width: int, height: int) -> bool:
    """Whether a box reaches the image's edge (its cell is cut by it)."""
    m = BORDER_MARGIN_PX
    return x <= m or y <= m or x + w >= width - m or y + h >= height - m


def clip_box(
    x: float, y: float, w: float, h: float, width: int, height: int
) -> tuple[int, int, int, int]:
    """A box rounded to whole pixels and clipped to the image (at least 1x1)."""
    x0 = int(np.clip(round(x), 0, width - 1))
    y0 = int(np.clip(round(y), 0, height - 1))
    x1 = int(np.clip(round(x + w), x0 + 1, width))
    y1 = int(np.clip(round(y + h), y0 + 1, height))
    return x0, y0, x1 - x0, y1 - y0


def cut_cell(rgb_uint8: np.ndarray, box: CellBox, pad: int = 0) -> np.ndarray:
    """The cell on a black background, box grown by pad on every side (black beyond the image)."""
    height, width = rgb_uint8.shape[:2]
    out = np.zeros((box.h + 2 * pad, box.w + 2 * pad, 3), np.uint8)
    x0, y0 = max(0, box.x - pad), max(0, box.y - pad)
    x1, y1 = min(width, box.x + box.w + pad), min(height, box.y + box.h + pad)
    ox, oy = x0 - (box.x - pad), y0 - (box.y - pad)
    out[oy : oy + y1 - y0, ox : ox + x1 - x0] = rgb_uint8[y0:y1, x0:x1]
    keep = np.zeros(out.shape[:2], np.uint8)
    if box.mask is not None:
        keep[pad : pad + box.h, pad : pad + box.w] = box.mask.astype(np.uint8)
        keep = cv2.dilate(keep, np.ones((5, 5), np.uint8))
    else:
        centre = (pad + box.w / 2.0, pad + box.h / 2.0)
        axes = (box.w / 2.0 * MASK_GROWTH, box.h / 2.0 * MASK_GROWTH)
        cv2.ellipse(keep, (centre, (2 * axes[0], 2 * axes[1]), 0.0), 1, thickness=-1)
    out[keep == 0] = 0
    return out
