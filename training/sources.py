"""Validation figures per data source (NIH patients, smear fields, reviewed cases) and, for
annotated smear fields, per parasite stage and per-field parasitemia against the annotations.

A source is *validated* for a version when its figures meet the acceptance criteria
(ACCEPTANCE, ``train_model --accept-*``); only validated sources enter the domain guard's
reference, so the guard keeps refusing a stain or species the version saw in training but does
not hold on.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from training.metrics import metrics_at

STAGES = ("ring", "trophozoite", "schizont", "gametocyte")
KEYS = ("n", "accuracy", "auc", "sensitivity", "specificity", "threshold")
# Sources whose groups are fields or cases, for which a per-group parasitemia is reported.
FIELD_SOURCES = ("smear", "reviewed")
# What a source's validation figures must reach for the source to count as validated: the
# field figures matter at ~1% parasitemia, where 1% false positives double the count.
ACCEPTANCE = {"sensitivity": 0.85, "specificity": 0.95, "parasitemia_error": 0.5}


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
        if origin in FIELD_SOURCES:
            row["parasitemia"] = field_parasitemia_error(
                groups[mask], labels[mask], probabilities[mask], threshold
            )
        out[origin] = row
    return out


def acceptance_failures(row: Mapping, acceptance: Mapping[str, float] = ACCEPTANCE) -> list[str]:
    """Why a source's figures (a per_source row) fall short of the criteria; [] = validated.

    A figure that cannot be measured (no parasitized cell: no sensitivity) is not held against
    the source; the parasitemia criterion applies to field and case sources only.
    """
    reasons = []
    for key in ("sensitivity", "specificity"):
        value = row.get(key)
        if value is not None and value == value and value < acceptance[key]:
            reasons.append(f"{key} {value:.3f} < {acceptance[key]}")
    error = (row.get("parasitemia") or {}).get("mae_pct_points")
    if error is not None and error > acceptance["parasitemia_error"]:
        reasons.append(
            f"parasitemia error {error:.2f} > {acceptance['parasitemia_error']} points per group"
        )
    return reasons


def validated_sources(
    per_source_rows: Mapping[str, Mapping], acceptance: Mapping[str, float] = ACCEPTANCE
) -> dict[str, dict]:
    """{source: {"validated": bool, "reasons": [...]}} for every source of per_source()."""
    out = {}
    for source, row in per_source_rows.items():
        reasons = acceptance_failures(row, acceptance)
        out[source] = {"validated": not reasons, "reasons": reasons}
    return out
