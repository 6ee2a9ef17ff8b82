"""Logits, temperature scaling and the choice of the operating threshold (numpy only).

The network ends in a sigmoid; its *logit* is the input of that sigmoid. Temperature scaling
divides the logit by T before the sigmoid: calibrated p = sigmoid(logit / T). T is fitted on the
validation data by minimising the negative log-likelihood. The stored threshold applies to this
calibrated probability (p >= threshold -> parasitized). The probability itself is computed by
classifier.calibration.calibrate, the function the engine serves with, never here.
"""

from __future__ import annotations

import numpy as np

SENSITIVITY_TARGET = 0.97
THRESHOLD_RULES = ("validation", "validation+training")
DEFAULT_THRESHOLD_RULE = "validation+training"
THRESHOLD_RULE = {
    "validation": (
        "the highest threshold on the temperature-calibrated probability whose sensitivity on "
        "the validation patients is >= {target:.2f} (p >= threshold -> parasitized)"
    ),
    "validation+training": (
        "the highest threshold on the temperature-calibrated probability whose sensitivity is "
        ">= {target:.2f} both on the validation patients and on the training patients (the "
        "lower of the two thresholds; p >= threshold -> parasitized). The validation patients "
        "guard against a threshold fitted to images the network has learnt; the training "
        "patients guard against a validation set of a few patients whose parasites happen to "
        "be easy, which would set the threshold too high for new patients"
    ),
}
_EPS = 1e-7


def logit(p: np.ndarray) -> np.ndarray:
    """Inverse sigmoid of probabilities (clipped; prefer exact logits where available)."""
    p = np.clip(np.asarray(p, np.float64), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean binary negative log-likelihood of the labels under sigmoid(logit / T)."""
    z = np.asarray(logits, np.float64) / temperature
    y = np.asarray(labels, np.float64)
    # log(1 + exp(-z)) for y = 1 and log(1 + exp(z)) for y = 0, computed stably.
    return float(np.mean(np.logaddexp(0.0, -z) * y + np.logaddexp(0.0, z) * (1.0 - y)))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in [0.05, 20] minimising the NLL: a log-spaced grid refined by golden section."""
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 121))
    losses = [nll(logits, labels, t) for t in grid]
    best = int(np.argmin(losses))
    lo, hi = np.log(grid[max(best - 1, 0)]), np.log(grid[min(best + 1, len(grid) - 1)])
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    for _ in range(60):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if nll(logits, labels, np.exp(a)) < nll(logits, labels, np.exp(b)):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2.0))


def choose_threshold(
    probabilities: np.ndarray, labels: np.ndarray, target: float = SENSITIVITY_TARGET
) -> float:
    """The highest threshold t with sensitivity(p >= t) >= target on these (validation) data.

    Candidates are the scores of the positive images; the answer is one of them, so the rule
    is exact. Without positive images the threshold is 0.5.
    """
    p = np.asarray(probabilities, np.float64)
    positives = np.sort(p[np.asarray(labels) == 1])[::-1]
    if positives.size == 0:
        return 0.5
    needed = int(np.ceil(target * positives.size - 1e-9))
    needed = min(max(needed, 1), positives.size)
    return float(positives[needed - 1])


def reliability_bins(
    probabilities: np.ndarray, labels: np.ndarray, n_bins: int = 10
) -> list[dict[str, float | int]]:
    """Equal-width probability bins: mean predicted probability, observed frequency, count."""
    p, y = np.asarray(probabilities, np.float64), np.asarray(labels, np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        mask = which == b
        count = int(mask.sum())
        bins.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "count": count,
                "mean_probability": float(p[mask].mean()) if count else float("nan"),
                "observed_frequency": float(y[mask].mean()) if count else float("nan"),
            }
        )
    return bins


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """ECE over 10 equal-width bins (weighted mean |observed - predicted|)."""
    bins = reliability_bins(probabilities, labels)
    total = sum(b["count"] for b in bins)
    if not total:
        return float("nan")
    gaps = [
        b["count"] * abs(b["observed_frequency"] - b["mean_probability"])
        for b in bins
        if b["count"]
    ]
    return float(sum(gaps) / total)
