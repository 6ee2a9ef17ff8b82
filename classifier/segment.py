"""Cell segmentation of whole-field thin-smear photographs into single-cell crops (OpenCV only).

Stained red cells are darker than the slide in every channel, most of all in green (haemoglobin
and eosin absorb it), so:
1. work at a fixed scale (the long side resized to WORK_SIZE px) on the blurred green channel;
2. Otsu threshold -> foreground; open to drop specks; fill each blob's holes (central pallor and
   ring-form parasites make cells look hollow);
3. estimate the typical cell radius (median inscribed radius of the blobs), and split touching
   cells with a marker-controlled watershed on the distance transform (markers: the cores where
   the distance exceeds a fraction of the typical radius);
4. drop regions far smaller than the median cell (platelets, debris, stain specks).
This is the classical baseline the learned detector (classifier.detector) is benchmarked against
(bench/segmentation.py); the platform itself detects cells with the detector. Crops are cut by
classifier.cells.cut_cell. No Django or TensorFlow imports.
"""

from __future__ import annotations

import cv2
import numpy as np

from classifier.cells import CellBox
from classifier.preprocess import check_shape

WORK_SIZE = 800  # long side, pixels, at which segmentation runs
MIN_AREA_FRACTION = 0.2  # of the median cell area
MAX_AREA_FRACTION = 6.0
CORE_FRACTION = 0.5  # watershed markers: distance > this x the typical radius


def foreground_mask(rgb_small: np.ndarray) -> np.ndarray:
    """uint8 0/255 mask of stained cells (holes filled) at the working scale."""
    green = cv2.GaussianBlur(rgb_small[..., 1], (5, 5), 0)
    _, mask = cv2.threshold(green, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(mask)
    cv2.drawContours(filled, contours, -1, 255, thickness=cv2.FILLED)
    return filled


def typical_radius(mask: np.ndarray, distance: np.ndarray) -> float:
    """Median over blobs of the largest inscribed radius: a clump of cells has about the same
    inscribed radius as one of them, so, unlike the blob area, this ignores clumping."""
    n_blobs, blobs = cv2.connectedComponents(mask)
    if n_blobs < 2:
        return 0.0
    peaks = np.zeros(n_blobs, np.float32)
    np.maximum.at(peaks, blobs.ravel(), distance.ravel())
    peaks = peaks[1:]
    return float(np.median(peaks[peaks >= 2.0])) if (peaks >= 2.0).any() else 0.0


def split_touching(mask: np.ndarray, distance: np.ndarray, radius: float) -> np.ndarray:
    """int32 labels (0 background, 1.. cells): watershed of the distance transform from cores.

    A marker is a connected core where the distance to the background exceeds CORE_FRACTION x the
    typical radius: touching cells meet at a neck thinner than that and get one core each.
    (Markers from local maxima of the distance split more clumps but cut more single cells;
    measured on the smear photographs, cores gave better precision and recall.)
    """
    peaks = (distance > CORE_FRACTION * radius).astype(np.uint8)
    _, markers = cv2.connectedComponents(peaks)
    markers = markers + 1  # 1 = background, 2.. = cells, 0 = to be decided by the watershed
    markers[(mask > 0) & (peaks == 0)] = 0
    relief = cv2.normalize(-distance, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    labels = cv2.watershed(cv2.cvtColor(relief, cv2.COLOR_GRAY2BGR), markers)
    labels = labels - 1  # background 0, cells 1.., watershed lines -1
    labels[(labels < 0) | (mask == 0)] = 0
    return labels


def segment_cells(rgb_uint8: np.ndarray) -> list[CellBox]:
    """Boxes (with masks) of the cells in a field photograph, in reading order.

    Raises classifier.preprocess.ImageShapeError for an image that cannot be a field.
    """
    check_shape(rgb_uint8, "field")
    height, width = rgb_uint8.shape[:2]
    scale = min(1.0, WORK_SIZE / max(height, width))
    small = cv2.resize(rgb_uint8, (round(width * scale), round(height * scale)), cv2.INTER_AREA)
    mask = foreground_mask(small)
    distance = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    radius = typical_radius(mask, distance)
    if radius <= 0:
        return []
    labels = split_touching(mask, distance, radius)
    boxes = []
    regions = _regions(labels)
    if not regions:
        return []
    cell_area = float(np.median([len(ys) for ys, _xs in regions.values()]))
    for label, (ys, xs) in regions.items():
        if not MIN_AREA_FRACTION * cell_area <= len(ys) <= MAX_AREA_FRACTION * cell_area:
            continue
        boxes.append(_box_at_full_scale(labels, label, ys, xs, scale, width, height))
    return sorted(boxes, key=lambda b: (b.y // 32, b.x))


def _regions(labels: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """label -> (ys, xs) of its pixels, in one pass (one sort) rather than one scan per label."""
    flat = labels.ravel()
    inside = np.flatnonzero(flat > 0)
    order = inside[np.argsort(flat[inside], kind="stable")]
    ids, starts = np.unique(flat[order], return_index=True)
    ys, xs = np.divmod(order, labels.shape[1])
    ends = [*starts[1:], len(order)]
    return {int(i): (ys[a:b], xs[a:b]) for i, a, b in zip(ids, starts, ends, strict=True)}


def _box_at_full_scale(
    labels: np.ndarray,
    label: int,
    ys: np.ndarray,
    xs: np.ndarray,
    scale: float,
    width: int,
    height: int,
) -> CellBox:
    x0, x1 = int(xs.min()), int(xs.max()) + 1
    y0, y1 = int(ys.min()), int(ys.max()) + 1
    fx0, fy0 = int(np.floor(x0 / scale)), int(np.floor(y0 / scale))
    fx1, fy1 = min(width, int(np.ceil(x1 / scale))), min(height, int(np.ceil(y1 / scale)))
    small_mask = (labels[y0:y1, x0:x1] == label).astype(np.uint8)
    mask = cv2.resize(small_mask, (fx1 - fx0, fy1 - fy0), interpolation=cv2.INTER_NEAREST) > 0
    return CellBox(fx0, fy0, fx1 - fx0, fy1 - fy0, mask=mask)
