"""ROC curve, confusion matrix and reliability diagram as PNG files (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.calibration import reliability_bins
from training.metrics import confusion, roc_auc, roc_curve


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_roc(labels: np.ndarray, probabilities: np.ndarray, threshold: float, path: Path) -> Path:
    """ROC curve with the AUC and the operating point at the threshold."""
    plt = _pyplot()
    fpr, tpr = roc_curve(labels, probabilities)
    cm = confusion(labels, np.asarray(probabilities) >= threshold)
    op_tpr = cm["tp"] / max(cm["tp"] + cm["fn"], 1)
    op_fpr = cm["fp"] / max(cm["fp"] + cm["tn"], 1)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, label=f"ROC (AUC {roc_auc(labels, probabilities):.4f})")
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
    ax.plot([op_fpr], [op_tpr], "o", color="red", label=f"threshold {threshold:.3f}")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    return _save(fig, plt, path)


def plot_confusion(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float, path: Path
) -> Path:
    """2x2 confusion matrix (rows: truth, columns: prediction) with counts."""
    plt = _pyplot()
    cm = confusion(labels, np.asarray(probabilities) >= threshold)
    grid = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]])
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(grid, cmap="Blues")
    names = ["uninfected", "parasitized"]
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=names, yticklabels=names)
    ax.set(xlabel="predicted", ylabel="true", title=f"threshold {threshold:.3f}")
    for (i, j), count in np.ndenumerate(grid):
        colour = "white" if count > grid.max() / 2 else "black"
        ax.text(j, i, str(count), ha="center", va="center", color=colour)
    return _save(fig, plt, path)


def plot_reliability(labels: np.ndarray, probabilities: np.ndarray, path: Path) -> Path:
    """Calibrated probability bins vs observed frequency, with the count of each bin."""
    plt = _pyplot()
    bins = [b for b in reliability_bins(probabilities, labels) if b["count"]]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8, label="perfect calibration")
    xs = [b["mean_probability"] for b in bins]
    ys = [b["observed_frequency"] for b in bins]
    ax.plot(xs, ys, "o-", label="model")
    for b, x, y in zip(bins, xs, ys, strict=True):
        ax.annotate(str(b["count"]), (x, y), textcoords="offset points", xytext=(4, -10))
    ax.set(xlabel="calibrated probability (bin mean)", ylabel="observed frequency of parasitized")
    ax.set(xlim=(0, 1), ylim=(0, 1), title="reliability (numbers: images per bin)")
    ax.legend(loc="upper left")
    return _save(fig, plt, path)


def _save(fig, plt, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_all(
    folder: Path, labels: np.ndarray, probabilities: np.ndarray, threshold: float
) -> dict[str, str]:
    """roc.png, confusion_matrix.png and reliability.png in folder; returns their paths."""
    folder = Path(folder)
    return {
        "roc": str(plot_roc(labels, probabilities, threshold, folder / "roc.png")),
        "confusion_matrix": str(
            plot_confusion(labels, probabilities, threshold, folder / "confusion_matrix.png")
        ),
        "reliability": str(plot_reliability(labels, probabilities, folder / "reliability.png")),
    }
