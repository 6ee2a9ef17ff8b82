"""Evaluate a registered model version on an NIH-layout folder.

The version's file is checked against its SHA-256 before it is loaded; probabilities are
calibrated with the version's temperature and called at its stored threshold. Metrics come with
95% intervals from a bootstrap over patients; ROC, confusion-matrix and reliability plots and a
metrics.json go to var/evaluations/<version>/<timestamp>/, and a summary is appended to the
version's ``metrics["evaluations"]``.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage

from classifier.models import ModelVersion
from classifier.registry import active_version, local_model_file
from training import calibration, plots
from training.data import decode_all, list_folder
from training.metrics import summarize
from training.pipeline import predict_logits

SUMMARY_KEYS = (
    "n",
    "accuracy",
    "auc",
    "sensitivity",
    "specificity",
    "precision",
    "f1",
    "threshold",
)


class EvaluationError(Exception):
    """The evaluation cannot run (no such version, no active version)."""


def resolve_version(name: str | None) -> ModelVersion:
    """The named version, or the active one when no name is given."""
    if name:
        version = ModelVersion.objects.filter(name=name).first()
        if version is None:
            raise EvaluationError(f"no model version named {name!r}")
        return version
    version = active_version()
    if version is None:
        raise EvaluationError("no model version is active; pass --version")
    return version


def load_verified_model(version: ModelVersion):
    """Load the version's Keras model after its SHA-256 check (ModelFileError if it fails)."""
    import keras

    with local_model_file(version) as path:
        return keras.models.load_model(path, compile=False)


def calibrated_probabilities(version: ModelVersion, images: np.ndarray) -> np.ndarray:
    model = load_verified_model(version)
    return calibration.calibrate(predict_logits(model, images), version.temperature)


def evaluate_version(
    version: ModelVersion,
    data: str | Path,
    reps: int = 1000,
    seed: int = 0,
    output_root: Path | None = None,
) -> dict:
    """Evaluate, write plots and metrics.json, record the summary on the version; returns all."""
    examples = list_folder(data)
    labels = np.array([e.label for e in examples])
    groups = np.array([e.group for e in examples])
    probabilities = calibrated_probabilities(version, decode_all(examples))
    result = summarize(labels, probabilities, groups, version.threshold, reps, seed)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    root = output_root or Path(settings.VAR_DIR) / "evaluations"
    folder = root / version.name / stamp
    result.update(
        version=version.name,
        temperature=version.temperature,
        data=str(Path(data).resolve()),
        evaluated_at=stamp,
        folder=str(folder),
        plots=plots.write_all(folder, labels, probabilities, version.threshold),
        reliability=calibration.reliability_bins(probabilities, labels),
    )
    result = strict_json(result)
    (folder / "metrics.json").write_text(json.dumps(result, indent=2))
    record_evaluation(version, result)
    return result


def record_evaluation(version: ModelVersion, result: dict) -> None:
    """Append a summary (metrics, intervals, paths) to the version's metrics JSON."""
    summary = {key: result[key] for key in (*SUMMARY_KEYS, "confusion_matrix", "ci95")}
    summary.update({k: result[k] for k in ("data", "evaluated_at", "folder", "plots")})
    summary["stored_plots"] = store_plots(version, result["evaluated_at"], result["plots"])
    metrics = dict(version.metrics or {})
    metrics["evaluations"] = [*metrics.get("evaluations", []), summary]
    version.metrics = metrics
    version.save(update_fields=["metrics"])


def store_plots(version: ModelVersion, stamp: str, plot_paths: dict[str, str]) -> dict[str, str]:
    """Copy the plots into the shared storage, where the admin pages of every machine find them."""
    stored = {}
    for kind, path in plot_paths.items():
        with open(path, "rb") as handle:
            name = f"models/{version.name}/evaluations/{stamp}/{kind}.png"
            stored[kind] = default_storage.save(name, File(handle))
    return stored


def strict_json(value):
    """NaN and infinities -> None, numpy scalars -> Python numbers (valid JSON everywhere)."""
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_report(result: dict) -> list[str]:
    """Human-readable lines: each metric with its 95% interval, and the confusion matrix."""
    ci = result.get("ci95", {})
    lines = [
        f"version {result['version']} on {result['data']}: {result['n']} images, "
        f"{result['n_groups']} patients; threshold {result['threshold']:.4f}, "
        f"temperature {result['temperature']:.4f}"
    ]
    for key in ("accuracy", "auc", "sensitivity", "specificity", "precision", "npv", "f1"):
        value, interval = result.get(key), ci.get(key)
        shown = "n/a" if value is None else f"{value:.4f}"
        if interval:
            shown += f"  (95% CI {interval[0]:.4f}-{interval[1]:.4f})"
        lines.append(f"  {key:<12} {shown}")
    cm = result["confusion_matrix"]
    lines.append(f"  confusion    TP {cm['tp']}  FN {cm['fn']}  FP {cm['fp']}  TN {cm['tn']}")
    lines.append(f"  plots and metrics.json in {result['folder']}")
    return lines
