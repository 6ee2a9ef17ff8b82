"""Cell segmentation against the IML-Malaria smear boxes: precision/recall at IoU 0.5, count error.

    python bench/segmentation.py [--limit N]

Reads $MALARIA_DATA_DIR/smears (default ../shared/data/smears). Every annotated box is a cell
('red blood cell' and the parasite stages alike; 'difficult' too). Matching is greedy by IoU,
one-to-one. The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from classifier.preprocess import decode_image  # noqa: E402
from classifier.segment import segment_cells  # noqa: E402


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (n, 4: x, y, w, h) with every box in b (m, 4)."""
    ax0, ay0, ax1, ay1 = a[:, 0], a[:, 1], a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx0, by0, bx1, by1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax1[:, None], bx1) - np.maximum(ax0[:, None], bx0), 0, None)
    ih = np.clip(np.minimum(ay1[:, None], by1) - np.maximum(ay0[:, None], by0), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + b[:, 2] * b[:, 3] - inter
    return inter / np.maximum(union, 1e-9)


def count_matches(predicted: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> int:
    if not len(predicted) or not len(truth):
        return 0
    iou = iou_matrix(predicted.astype(float), truth.astype(float))
    matched = 0
    for flat in np.argsort(-iou, axis=None):
        i, j = np.unravel_index(flat, iou.shape)
        if iou[i, j] < threshold:
            break
        if np.isfinite(iou[i, j]):
            matched += 1
            iou[i, :] = -np.inf
            iou[:, j] = -np.inf
    return matched


def truth_boxes(entry: dict) -> np.ndarray:
    rows = [[float(o["bbox"][k]) for k in ("x", "y", "w", "h")] for o in entry["objects"]]
    return np.array(rows, dtype=float).reshape(-1, 4)


def evaluate(folder: Path, limit: int | None = None) -> dict:
    entries = json.loads((folder / "annotations.json").read_text())[:limit]
    tp = n_pred = n_true = 0
    count_errors, seconds = [], 0.0
    for entry in entries:
        rgb = decode_image((folder / "images" / entry["image_name"]).read_bytes())
        start = time.perf_counter()
        boxes = segment_cells(rgb)
        seconds += time.perf_counter() - start
        predicted = np.array([[b.x, b.y, b.w, b.h] for b in boxes], dtype=float).reshape(-1, 4)
        truth = truth_boxes(entry)
        tp += count_matches(predicted, truth)
        n_pred, n_true = n_pred + len(predicted), n_true + len(truth)
        count_errors.append(abs(len(predicted) - len(truth)))
    return {
        "images": len(entries),
        "precision": round(tp / max(n_pred, 1), 4),
        "recall": round(tp / max(n_true, 1), 4),
        "mean_abs_count_error": round(float(np.mean(count_errors)), 2),
        "mean_true_cells_per_image": round(n_true / max(len(entries), 1), 1),
        "ms_per_image": round(1000 * seconds / max(len(entries), 1), 1),
        "iou_threshold": 0.5,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    args = parser.parse_args()
    data_dir = Path(os.environ.get("MALARIA_DATA_DIR", ROOT.parent / "shared" / "data"))
    result = evaluate(data_dir / "smears", args.limit)
    print(
        f"{result['images']} images: precision {result['precision']:.3f}, recall "
        f"{result['recall']:.3f} at IoU 0.5; mean |count error| {result['mean_abs_count_error']}"
        f" of {result['mean_true_cells_per_image']} cells/image; {result['ms_per_image']} ms/image"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
