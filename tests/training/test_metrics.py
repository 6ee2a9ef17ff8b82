"""Metrics at a threshold, AUC, patient bootstrap, temperature and the threshold rule."""

import numpy as np
import pytest

from classifier.calibration import calibrate
from training import calibration
from training.metrics import bootstrap_ci, metrics_at, roc_auc, summarize


def test_metrics_match_a_hand_computed_confusion_matrix():
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    probs = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.2, 0.1, 0.4, 0.05, 0.5])
    m = metrics_at(labels, probs, threshold=0.5)
    # p >= 0.5: positives 0.9, 0.8, 0.6 (TP 3), 0.7 and 0.5 (FP 2); FN 1 (0.3); TN 4.
    assert m["confusion_matrix"] == {"tp": 3, "fp": 2, "tn": 4, "fn": 1}
    assert m["accuracy"] == pytest.approx(7 / 10)
    assert m["sensitivity"] == pytest.approx(3 / 4)
    assert m["specificity"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["f1"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    # AUC: of 24 positive/negative pairs, the positive scores higher in 20 (0.3 loses to 0.7,
    # 0.4 and 0.5; 0.6 loses to 0.7).
    assert m["auc"] == pytest.approx(20 / 24)


def test_auc_counts_ties_as_one_half():
    assert roc_auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    assert np.isnan(roc_auc([1, 1], [0.2, 0.3]))


def _grouped_predictions(seed: int = 0):
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"C{g}" for g in range(25)], 40)
    labels = rng.integers(0, 2, len(groups))
    probs = np.clip(labels * 0.6 + rng.normal(0.2, 0.2, len(groups)), 0, 1)
    return labels, probs, groups


def test_the_bootstrap_interval_brackets_the_point_estimate():
    labels, probs, groups = _grouped_predictions()
    result = summarize(labels, probs, groups, 0.5, reps=300, seed=1)
    for key in ("accuracy", "auc", "sensitivity", "specificity", "precision", "f1"):
        low, high = result["ci95"][key]
        assert low <= result[key] <= high, key
        assert high - low > 0


def test_the_bootstrap_is_seedable():
    labels, probs, groups = _grouped_predictions()
    assert bootstrap_ci(labels, probs, groups, 0.5, 100, seed=7) == bootstrap_ci(
        labels, probs, groups, 0.5, 100, seed=7
    )


def test_the_bootstrap_resamples_patients_not_images():
    # One patient holds every error: a patient bootstrap sees it either in or out.
    labels = np.ones(100, int)
    probs = np.r_[np.zeros(10), np.ones(90)]
    groups = np.repeat(["C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9", "C10"], 10)
    low, high = bootstrap_ci(labels, probs, groups, 0.5, 500, seed=0)["sensitivity"]
    assert high == 1.0 and low < 0.85


def test_the_threshold_is_the_highest_with_the_target_sensitivity():
    labels = np.r_[np.ones(100, int), np.zeros(5, int)]
    probs = np.r_[np.linspace(0.01, 1.0, 100), [0.1] * 5]
    t = calibration.choose_threshold(probs, labels, 0.97)
    called = probs[:100] >= t
    assert called.mean() >= 0.97
    assert (probs[:100] >= np.nextafter(t, 1.0)).mean() < 0.97


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, 20000)
    labels = (rng.uniform(size=true_logits.size) < calibrate(true_logits, 1.0)).astype(int)
    overconfident = true_logits * 3.0
    assert calibration.fit_temperature(overconfident, labels) == pytest.approx(3.0, rel=0.05)
    nll_raw = calibration.nll(overconfident, labels, 1.0)
    assert calibration.nll(overconfident, labels, 3.0) < nll_raw


def test_reliability_bins_count_every_image():
    probs = np.array([0.05, 0.15, 0.95, 0.97, 1.0])
    bins = calibration.reliability_bins(probs, np.array([0, 0, 1, 1, 1]))
    assert sum(b["count"] for b in bins) == 5
    assert bins[-1]["count"] == 3 and bins[-1]["observed_frequency"] == 1.0


def test_sensitivity_at_a_fixed_specificity():
    from training.metrics import sensitivity_at_specificity

    # 200 negatives scored 0..199/1000, 10 positives: 5 above every negative, 5 among them.
    negatives = np.arange(200) / 1000.0
    positives = np.array([0.5, 0.6, 0.7, 0.8, 0.9, 0.0, 0.01, 0.05, 0.1, 0.15])
    labels = np.r_[np.zeros(200), np.ones(10)]
    out = sensitivity_at_specificity(labels, np.r_[negatives, positives], (0.99, 0.995))
    # 0.99: 2 negatives may lie above the threshold -> t = 0.197; 0.995: 1 -> t = 0.198.
    assert out["0.99"]["threshold"] == pytest.approx(0.197)
    assert out["0.99"]["specificity"] == pytest.approx(0.99)
    assert out["0.99"]["sensitivity"] == pytest.approx(0.5)
    assert out["0.995"]["specificity"] == pytest.approx(0.995)
    assert sensitivity_at_specificity(np.zeros(5), np.arange(5.0))["0.99"] is None
