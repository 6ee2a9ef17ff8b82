"""What a training run is: its options (TrainConfig), its data (RunData), its log and its LR schedule.

Shared by the fit (training.train, training.callbacks) and the steps after it (training.finalize),
so that neither has to import the other. numpy only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from training.calibration import DEFAULT_THRESHOLD_RULE
from training.data import Example
from training.pipeline import Augmentation
from training.sources import ACCEPTANCE

Log = Callable[[str], None]

LR_SCHEDULES = ("plateau", "cosine")


@dataclass
class TrainConfig:
    """Every option of a training run; stored as config.json in the run folder."""

    data: str
    name: str
    output: str
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-3
    dropout: float = 0.5
    # Training targets 0/1 become s/2 and 1 - s/2: the loss stops pushing the network towards
    # certainty on the few images whose label is wrong. Temperature scaling recalibrates after.
    label_smoothing: float = 0.0
    val_fraction: float = 0.2
    seed: int = 42
    include_reviewed: bool = False
    # Cells cut (classifier.cells.cut_cell) from an annotated smear folder (IML layout), trained
    # on beside the NIH cells; the last smear_val_fraction of its fields (by name) validate.
    smears: str | None = None
    smear_val_fraction: float = 0.15
    # Each parasitized smear cell is seen this many times per epoch (they are ~1.4% of cells).
    smear_positive_repeat: int = 1
    max_minutes: float | None = None  # wall-clock budget for the fit (all resumes together)
    stop_patience: int = 6  # epochs without a lower validation loss before stopping
    lr_patience: int = 2  # epochs without a lower validation loss before halving the LR
    lr_factor: float = 0.5
    min_lr: float = 1e-5
    # Exponential moving average of the weights (per step); when set, the averaged weights are
    # the ones validated, early-stopped on and shipped.
    ema_momentum: float | None = None
    # "plateau": halve the LR when validation loss stalls; "cosine": decay the LR from
    # learning_rate to min_lr along half a cosine over the epochs (no plateau halving).
    lr_schedule: str = "plateau"
    # Warm start: a model file whose weights initialise the network (and its SHA-256, checked).
    init_from: str | None = None
    init_sha256: str | None = None
    init_note: str | None = None  # what the starting weights were (for the card)
    sensitivity_target: float = 0.97
    # training.calibration.THRESHOLD_RULES: where the sensitivity target must be met.
    threshold_rule: str = DEFAULT_THRESHOLD_RULE
    # Which validation loss picks the best epoch and drives the plateau and the early stop:
    # after temperature scaling ("val_loss_calibrated") or raw ("val_loss").
    selection_metric: str = "val_loss_calibrated"
    bootstrap_reps: int = 1000
    # What each source's validation figures must reach to enter the domain guard's reference
    # (training.sources.ACCEPTANCE): a source that misses them stays refused by the guard.
    acceptance: dict = field(default_factory=lambda: dict(ACCEPTANCE))
    augmentation: dict = field(default_factory=lambda: Augmentation().as_dict())

    def save(self, folder: Path) -> None:
        (folder / "config.json").write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, folder: Path) -> TrainConfig:
        return cls(**json.loads((folder / "config.json").read_text()))


@dataclass
class RunData:
    """The examples of a run, their decoded images and the split."""

    examples: list[Example]
    images: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    origins: np.ndarray | None = None  # per example: "nih", "smear" or "reviewed"
    stages: np.ndarray | None = None  # per example: the smear cell's parasite stage, or ""


def write_json(path: Path, payload: dict) -> None:
    """Write JSON atomically (a killed run never leaves half a state file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)


def half_cosine(high: float, low: float, progress: float) -> float:
    """From high at progress 0 down to low at progress 1 along half a cosine (the LR schedule
    of both the classifier's and the detector's runs)."""
    return float(low + (high - low) * 0.5 * (1.0 + np.cos(np.pi * min(progress, 1.0))))


def cosine_lr(config: TrainConfig, epoch: int) -> float:
    """The learning rate of a 0-based epoch under the cosine schedule."""
    progress = epoch / max(config.epochs - 1, 1)
    return half_cosine(config.learning_rate, config.min_lr, progress)
