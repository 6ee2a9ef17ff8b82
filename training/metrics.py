"""Classification metrics at a threshold and their patient-level bootstrap intervals (numpy only).

Positive class = parasitized (label 1); an image is called positive when p >= threshold.
Confidence intervals resample *patients* (groups) with replacement, not images: images of one
patient are correlated, so an image-level bootstrap would give intervals that are too narrow.
"""

from __future__ import annotations

import math

import numpy as np

POINT_METRICS = (
    "accuracy",
    "auc",
    "sensitivity",
    "specificity",
    "precision",
    "npv",
    "f1",
)


def confusion(labels: np.ndarray, predicted: np.ndarray) -> dict[str, int]:
    """Counts tp, fp, tn, fn for 0/1 labels and 0/1 predictions."""
    y, yhat = np.asarray(labels).astype(bool), np.asarray(predicted).astype(bool)
    return {
        "tp": int(np.sum(y & yhat)),
        "fp": int(np.sum(~y & yhat)),
        "tn": int(np.sum(~y & ~yhat)),
        "fn": int(np.sum(y & ~yhat)),
    }


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count one half); NaN with one class only."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    sorted_scores = s[order]
    # Average ranks over ties.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, np.float64)
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[last_of_tie]
    fps = np.cumsum(~y)[last_of_tie]
    tpr = np.r_[0.0, tps / max(int(y.sum()), 1)]
    fpr = np.r_[0.0, fps / max(int((~y).sum()), 1)]
    return fpr, tpr


def sensitivity_at_specificity(
    labels: np.ndarray, scores: np.ndarray, specificities=(0.99, 0.995)
) -> dict[str, dict | None]:
    """For each specificity: the lowest threshold that keeps it on these negatives, and the
    sensitivity there — how well the scores rank, apart from the version's own threshold (at
    ~1% parasitemia, specificity 0.995 is what keeps false positives under half a point)."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, np.float64)
    negatives = np.sort(s[~y])
    out: dict[str, dict | None] = {}
    for specificity in specificities:
        if not len(negatives) or not y.any():
            out[str(specificity)] = None
            continue
        # Calling p > t parasitized: the k-th lowest negative score as t leaves n - k above it.
        k = min(int(np.ceil(specificity * len(negatives))), len(negatives))
        threshold = float(negatives[k - 1])
        out[str(specificity)] = {
            "threshold": threshold,
            "sensitivity": float((s[y] > threshold).mean()),
            "specificity": float((negatives <= threshold).mean()),
        }
    return out


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


def metrics_at(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict:
    """n, accuracy, AUC, sensitivity, specificity, precision, NPV, F1 and the confusion matrix."""
    y = np.asarray(labels).astype(int)
    p = np.asarray(probabilities, np.float64)
    cm = confusion(y, p >= threshold)
    tp, fp, tn, fn = cm["tp"], cm["fp"], cm["tn"], cm["fn"]
    precision, sensitivity = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    return {
        "n": int(len(y)),
        "n_parasitized": int(y.sum()),
        "n_uninfected": int(len(y) - y.sum()),
        "threshold": float(threshold),
        "accuracy": _ratio(tp + tn, len(y)),
        "auc": roc_auc(y, p),
        "sensitivity": sensitivity,
        "specificity": _ratio(tn, tn + fp),
        "precision": precision,
        "npv": _ratio(tn, tn + fn),
        "f1": f1,
        "confusion_matrix": cm,
    }


def bootstrap_ci(
    labels: np.ndarray,
    probabilities: np.ndarray,
    groups: np.ndarray,
    threshold: float,
    reps: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, list[float]]:
    """Percentile intervals for each metric and confusion count, resampling groups (patients).

    Each replicate draws as many groups as there are, with replacement, and pools their images.
    A replicate where a metric is undefined (e.g. no positive image) is skipped for that metric.
    """
    y = np.asarray(labels).astype(int)
    p = np.asarray(probabilities, np.float64)
    names, inverse = np.unique(np.asarray(groups), return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(names))]
    rng = np.random.default_rng(seed)
    keys = (*POINT_METRICS, "tp", "fp", "tn", "fn")
    samples: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(reps):
        chosen = rng.integers(0, len(names), len(names))
        idx = np.concatenate([members[g] for g in chosen])
        m = metrics_at(y[idx], p[idx], threshold)
        values = {**{k: m[k] for k in POINT_METRICS}, **m["confusion_matrix"]}
        for key in keys:
            if not math.isnan(values[key]):
                samples[key].append(float(values[key]))
    alpha = (1.0 - level) / 2.0
    return {
        key: [float(np.quantile(v, alpha)), float(np.quantile(v, 1.0 - alpha))]
        for key, v in samples.items()
        if v
    }


def summarize(
    labels: np.ndarray,
    probabilities: np.ndarray,
    groups: np.ndarray,
    threshold: float,
    reps: int = 1000,
    seed: int = 0,
) -> dict:
    """Point metrics plus ``ci95`` (patient bootstrap) and the number of groups."""
    result = metrics_at(labels, probabilities, threshold)
    result["n_groups"] = int(len(np.unique(np.asarray(groups))))
    result["bootstrap"] = {"unit": "patient", "reps": int(reps), "seed": int(seed)}
    result["ci95"] = bootstrap_ci(labels, probabilities, groups, threshold, reps, seed)
    return result
