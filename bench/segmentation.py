"""Cell detection and field parasitemia against annotated field photographs (IML layout).

    python bench/segmentation.py [--data DIR] [--split all|validation] [--limit N]
                                 [--detector DIR] [--classifier DIR]

Runs the detector and the classifier the platform ships (classifier/default_detector/ and
classifier/default_model/, what `make run` activates; other exported folders with --detector /
--classifier) over every photograph of DIR (default $MALARIA_DATA_DIR/smears, i.e.
../shared/data/smears), exactly as the worker does: detect, cut each cell with cut_cell, classify
with Grad-CAM. Every annotated box is a cell. Reported:
- precision / recall: one-to-one matches at IoU >= 0.5 over all boxes (border cells included);
  interior_precision / interior_recall: the same for cells not cut by the image's edge (the
  annotators box edge cells inconsistently; the count leaves them out anyway);
- count_error_pct: mean over fields of |counted - annotated| / annotated, cells cut by the image
  edge excluded on both sides (the platform does not count them);
- seconds_per_field: detection + classification (with Grad-CAM) of one field, decoding excluded
  (also split into detect_ / classify_seconds_per_field), and classifier_forward_cells_per_s, the
  plain forward pass measured in the same process: how fast this CPU is;
- parasitemia_mae_pct: mean over fields of |estimated - annotated parasitemia| in percentage points
  (estimated: parasitized / counted gradable cells; annotated: parasite-stage boxes / all boxes);
- baseline_precision / baseline_recall / baseline_count_error_pct: the classical OpenCV
  segmentation (classifier/segment.py) on the same fields, in the same process.
--split validation keeps only the fields the shipped detector held out in training (its card).
The last line printed is one JSON object.
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

from classifier.cells import cut_cell, touches_border  # noqa: E402
from classifier.segment import segment_cells  # noqa: E402
from training.smears import DetectionTally, load_fields, split_fields  # noqa: E402

DEFAULT_DETECTOR = ROOT / "classifier" / "default_detector"
DEFAULT_CLASSIFIER = ROOT / "classifier" / "default_model"


def load_shipped(detector_dir: Path, classifier_dir: Path):
    """The Detector and the Engine of two exported folders, hash-checked against their manifests."""
    from classifier.detector import Detector
    from classifier.engine import Engine

    d = json.loads((detector_dir / "manifest.json").read_text())
    c = json.loads((classifier_dir / "manifest.json").read_text())
    detector = Detector.load(
        str(detector_dir / d["file"]), expected_sha256=d["sha256"], threshold=d["threshold"]
    )
    engine = Engine.load(
        classifier_dir / c["file"],
        expected_sha256=c["sha256"],
        threshold=c["threshold"],
        temperature=c.get("temperature", 1.0),
        quality_reference=c.get("quality_reference") or None,
        batch_size=64,
    )
    return detector, engine, {"detector": d["name"], "classifier": c["name"]}


def forward_rate(engine, n: int = 128) -> float:
    """The classifier's plain forward pass on this machine (cells/s): the yardstick that says
    how fast this CPU is, to compare seconds_per_field across machines."""
    import tensorflow as tf

    x = np.random.default_rng(0).random((64, 150, 150, 3), dtype=np.float32)
    forward = tf.function(lambda batch: engine.model(batch, training=False))
    forward(x)
    started = time.perf_counter()
    for _ in range(n // 64):
        forward(x)
    return round(n / (time.perf_counter() - started), 1)


def evaluate(fields, detector, engine) -> dict:
    tally, baseline = DetectionTally(), DetectionTally()
    seconds, detect_seconds, baseline_seconds, parasitemia_errors = 0.0, 0.0, 0.0, []
    for field in fields:
        rgb = field.read()
        height, width = rgb.shape[:2]
        truth_border = field.on_border(width, height)
        started = time.perf_counter()
        cells = detector.detect(rgb)
        detect_seconds += time.perf_counter() - started
        counted = [c for c in cells if not c.on_border]
        results = engine.analyse([cut_cell(rgb, c) for c in counted]) if counted else []
        seconds += time.perf_counter() - started
        predicted = np.array([[c.x, c.y, c.w, c.h] for c in cells], float).reshape(-1, 4)
        tally.add(predicted, [c.on_border for c in cells], field.boxes, truth_border)
        gradable = [r for r in results if r.quality.ok]
        positive = sum(r.label == "parasitized" for r in gradable)
        estimated = 100.0 * positive / max(len(gradable), 1)
        annotated = 100.0 * field.parasitized.sum() / max(len(field.boxes), 1)
        parasitemia_errors.append(abs(estimated - annotated))

        started = time.perf_counter()
        classical = segment_cells(rgb)
        baseline_seconds += time.perf_counter() - started
        boxes = np.array([[c.x, c.y, c.w, c.h] for c in classical], float).reshape(-1, 4)
        on_edge = np.array([touches_border(*b, width, height) for b in boxes], bool)
        baseline.add(boxes, on_edge, field.boxes, truth_border)
    ours, theirs = tally.summary(), baseline.summary()
    n = max(len(fields), 1)
    return {
        "images": ours["images"],
        "precision": ours["precision"],
        "recall": ours["recall"],
        "count_error_pct": ours["count_error_pct"],
        "interior_precision": ours["interior_precision"],
        "interior_recall": ours["interior_recall"],
        "seconds_per_field": round(seconds / n, 3),
        "detect_seconds_per_field": round(detect_seconds / n, 3),
        "classify_seconds_per_field": round((seconds - detect_seconds) / n, 3),
        "cells_per_field": round(ours["detected_cells"] / n, 1),
        "parasitemia_mae_pct": round(float(np.mean(parasitemia_errors or [0.0])), 3),
        "annotated_cells": ours["annotated_cells"],
        "detected_cells": ours["detected_cells"],
        "baseline_precision": theirs["precision"],
        "baseline_recall": theirs["recall"],
        "baseline_count_error_pct": theirs["count_error_pct"],
        "baseline_interior_precision": theirs["interior_precision"],
        "baseline_interior_recall": theirs["interior_recall"],
        "baseline_seconds_per_field": round(baseline_seconds / n, 3),
        "iou_threshold": 0.5,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    data_dir = Path(os.environ.get("MALARIA_DATA_DIR", ROOT.parent / "shared" / "data"))
    parser.add_argument("--data", default=str(data_dir / "smears"), help="an IML-layout folder")
    parser.add_argument("--split", choices=("all", "validation"), default="all")
    parser.add_argument("--limit", type=int, default=None, help="only the first N fields")
    parser.add_argument(
        "--detector", default=str(DEFAULT_DETECTOR), help="exported detector folder"
    )
    parser.add_argument("--classifier", default=str(DEFAULT_CLASSIFIER), help="exported classifier")
    args = parser.parse_args()
    detector, engine, names = load_shipped(Path(args.detector), Path(args.classifier))
    fields = load_fields(args.data)
    if args.split == "validation":
        card = json.loads((Path(args.detector) / "card.json").read_text())
        held_out = set(card.get("validation_fields") or [])
        fields = [f for f in fields if f.name in held_out] or split_fields(fields, 0.15)[1]
    fields = fields[: args.limit]
    detector.detect(fields[0].read())  # warm-up: the first call traces the network
    result = {**evaluate(fields, detector, engine), "split": args.split, **names}
    result["classifier_forward_cells_per_s"] = forward_rate(engine)
    print(
        f"{result['images']} fields ({args.split}): detector precision {result['precision']:.3f}, "
        f"recall {result['recall']:.3f} at IoU 0.5, count error {result['count_error_pct']:.1f}%, "
        f"{result['seconds_per_field']:.3f} s/field (detection + classification); parasitemia "
        f"error {result['parasitemia_mae_pct']:.2f} points. Classical baseline: precision "
        f"{result['baseline_precision']:.3f}, recall {result['baseline_recall']:.3f}, count error "
        f"{result['baseline_count_error_pct']:.1f}%"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
