"""The domain guard's flag rates: what it lets through and what it refuses.

    python bench/domain_guard.py [--nih DIR] [--smears DIR] [--classifier DIR] [--per-group N]

Judges groups of cells with the classifier the platform ships (classifier/default_model/, or an
exported folder given by --classifier) and the domain reference stored in its manifest, exactly
as the worker does (classifier.domain.check_group on each group's penultimate features and
colours):
- the NIH validation patients (the 19 that train_model holds out; in the reference) and the NIH
  training patients, as they are;
- the same patients with their stain changed (classifier.domain.shift_stain): the README's strong
  shift (STAIN_SHIFT: hue +60 degrees, saturation x1.4, white balance 0.85/1/1.2), a mild one
  (hue +30 degrees, saturation x1.2, 0.92/1/1.1) and a white-balance change alone (0.85/1/1.2);
- the IML-Malaria fields (another lab's stain and camera, P. vivax): the held-out block and all.
A version validated on NIH only should pass the first rows (about 5% flagged: the limit's
calibration) and refuse the shifted and IML rows. Per row: groups judged, the share flagged, the
lowest and median score against the limit, and the model's sensitivity / specificity on those
cells at its threshold. Data from $MALARIA_DATA_DIR (default ../shared/data). The last line
printed is one JSON object.
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

SHIFTS = {
    "strong": {"hue_degrees": 60.0, "saturation": 1.4, "gains": (0.85, 1.0, 1.2)},
    "mild": {"hue_degrees": 30.0, "saturation": 1.2, "gains": (0.92, 1.0, 1.1)},
    "white balance": {"hue_degrees": 0.0, "saturation": 1.0, "gains": (0.85, 1.0, 1.2)},
}


def load_shipped(folder: Path):
    """The network of an exported folder (hash-checked by classifier.engine.Engine.load) and its
    manifest."""
    from classifier.engine import Engine

    manifest = json.loads((folder / "manifest.json").read_text())
    engine = Engine.load(folder / manifest["file"], expected_sha256=manifest["sha256"])
    return engine.model, manifest


def judge(model, manifest: dict, images: np.ndarray, labels: np.ndarray, groups: np.ndarray):
    """One row: the guard on every group, and the model's figures on the cells."""
    from classifier import domain
    from classifier.calibration import calibrate
    from training.metrics import metrics_at
    from training.pipeline import logits_and_features

    reference = manifest["quality_reference"]["domain"]
    logits, features = logits_and_features(model, images)
    colours = domain.cell_colours(images)
    results = [
        domain.check_group(features[groups == g], colours[groups == g], reference)
        for g in sorted(set(groups.tolist()))
    ]
    judged = [r for r in results if r.status != domain.UNDETERMINED]
    scores = np.array([r.score for r in judged])
    figures = metrics_at(labels, calibrate(logits, manifest["temperature"]), manifest["threshold"])
    return {
        "groups": len(judged),
        "flagged": sum(r.flagged for r in judged),
        "flagged_fraction": round(sum(r.flagged for r in judged) / max(len(judged), 1), 4),
        "lowest_score": round(float(scores.min()), 3) if len(scores) else None,
        "median_score": round(float(np.median(scores)), 3) if len(scores) else None,
        "limit": round(float(reference["limit"]), 3),
        "cells": int(len(labels)),
        "sensitivity": figures["sensitivity"],
        "specificity": figures["specificity"],
    }


def main() -> None:
    data = Path(os.environ.get("MALARIA_DATA_DIR", ROOT.parent / "shared" / "data"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nih", default=str(data / "nih_cells"))
    parser.add_argument("--smears", default=str(data / "smears"))
    parser.add_argument("--classifier", default=str(ROOT / "classifier" / "default_model"))
    parser.add_argument("--per-group", type=int, default=60, help="cells per patient (60)")
    args = parser.parse_args()

    # training.evaluate reads folders with the platform's own loaders, which live beside its
    # models: Django is set up (no database is touched).
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "malariaweb.settings")
    os.environ.setdefault("DEBUG", "true")
    import django

    django.setup()
    from classifier import domain
    from training.evaluate import load_evaluation_data

    started = time.monotonic()
    model, manifest = load_shipped(Path(args.classifier))
    rows = {}
    for split in ("validation", "training"):
        cells = load_evaluation_data(args.nih, split, per_group=args.per_group, seed=0)
        rows[f"NIH {split} patients"] = judge(
            model, manifest, cells.images, cells.labels, cells.groups
        )
        for name, shift in SHIFTS.items():
            shifted = np.stack([domain.shift_stain(c, **shift) for c in cells.images])
            rows[f"NIH {split} patients, {name} stain shift"] = judge(
                model, manifest, shifted, cells.labels, cells.groups
            )
    if Path(args.smears).exists():
        for split in ("validation", "all"):
            cells = load_evaluation_data(args.smears, split)
            rows[f"IML-Malaria fields ({split})"] = judge(
                model, manifest, cells.images, cells.labels, cells.groups
            )
    for name, row in rows.items():
        print(
            f"{name:<50} {row['flagged']:>3} of {row['groups']:<3} flagged "
            f"({row['flagged_fraction']:.3f}); scores lowest {row['lowest_score']} median "
            f"{row['median_score']} (limit {row['limit']}); model sensitivity "
            f"{row['sensitivity']:.3f} specificity {row['specificity']:.3f} on {row['cells']} cells"
        )
    summary = {"version": manifest["name"], "seconds": round(time.monotonic() - started, 1)}
    print(json.dumps({**summary, "rows": rows}, default=float))


if __name__ == "__main__":
    main()
