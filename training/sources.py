"""Validation figures per data source (NIH patients, smear fields, reviewed cases) and, for
annotated smear fields, per parasite stage and per-field parasitemia against the annotations."""

from __future__ import annotations

import numpy as np

from training.metrics import metrics_at

STAGES = ("ring", "trophozoite", "schizont", "gametocyte")
KEYS = ("n", "accuracy", "auc", "sensitivity", "specificity", "threshold")


def stage_sensitivity(stages: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict:
    """Per parasite stage: how many annotated cells of it, and the share called parasitized
    (None for a stage without cells). Used by train_model's card and by evaluate_model."""
    out = {}
    for stage in STAGES:
        mask = np.asarray(stages) == stage
        n = int(mask.sum())
        called = float((probabilities[mask] >= threshold).mean()) if n else None
        out[stage] = {"n": n, "sensitivity": None if called is None else round(called, 4)}
    return out


def field_parasitemia_error(
    groups: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, threshold: float
) -> dict:
    """Mean |estimated - annotated| parasitemia per field in percentage points (annotated cells)."""
    errors = []
    for group in np.unique(groups):
        mask = groups == group
        estimated = 100.0 * float((probabilities[mask] >= threshold).mean())
        annotated = 100.0 * float(labels[mask].mean())
        errors.append(abs(estimated - annotated))
    return {
        "fields": len(errors),
        "mae_pct_points": round(float(np.mean(errors)), 3) if errors else None,
        "max_pct_points": round(float(np.max(errors)), 3) if errors else None,
    }


def per_source(
    origins: np.ndarray,
    stages: np.ndarray,
    groups: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    threshold: float,
) -> dict:
    """{source: metrics at the threshold}; smear sources add per-stage sensitivity and parasitemia."""
    out = {}
    for origin in sorted(set(origins.tolist())):
        mask = origins == origin
        figures = metrics_at(labels[mask], probabilities[mask], threshold)
        row = {k: figures.get(k) for k in KEYS}
        row.update(n_parasitized=int(labels[mask].sum()), n_groups=len(set(groups[mask].tolist())))
        if origin == "smear":
            row["per_stage"] = stage_sensitivity(stages[mask], probabilities[mask], threshold)
            row["parasitemia"] = field_parasitemia_error(
                groups[mask], labels[mask], probabilities[mask], threshold
            )
        out[origin] = row
    return out
