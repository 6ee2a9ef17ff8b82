"""Train the CNN on an NIH-layout folder: patient-grouped split, cached pipeline, resumable fit.

A run lives in one output folder::

    config.json                 the options of the run (a resume reuses them)
    init.keras                  with --init-from VERSION: that version's file, the warm start
    split.json                  which groups (patients) went to training and to validation
    cache/images.npy (+ .json)  every image decoded once by classifier.preprocess, uint8 150x150
    checkpoint/last.keras       model + optimizer state after the last finished epoch
    checkpoint/best.weights.h5  weights of the epoch with the lowest validation loss
    checkpoint/state.json       epoch number, history, early-stopping / plateau state, timings
    model.keras, card.json, card.md, plots   written by finalize() once training has stopped

``--resume`` continues from checkpoint/last.keras after an interruption; when the fit had already
stopped it only redoes the final steps (calibration, card, registration).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from training.calibration import DEFAULT_THRESHOLD_RULE
from training.data import Example, list_folder, load_or_decode, split_by_group
from training.pipeline import Augmentation, make_dataset

Log = Callable[[str], None]


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


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)


def collect_examples(config: TrainConfig) -> list[Example]:
    """The folder's images, plus reviewer-labelled images with --include-reviewed."""
    examples = list_folder(config.data)
    if config.include_reviewed:
        from training.reviewed import reviewed_examples

        examples += [
            Example(src, label, group, origin="reviewed")
            for src, label, group in reviewed_examples()
        ]
    return examples


def smear_examples(config: TrainConfig) -> tuple[list[Example], list[Example]]:
    """(training, validation) cells of the smear folder, split by field as the detector's is."""
    from training.smears import cell_examples, load_fields, split_fields

    train_fields, val_fields = split_fields(load_fields(config.smears), config.smear_val_fraction)
    return cell_examples(train_fields), cell_examples(val_fields)


def prepare_data(config: TrainConfig, folder: Path, log: Log) -> RunData:
    """List, split and decode (or read from the cache) the run's images."""
    examples = collect_examples(config)
    labels = np.array([e.label for e in examples], np.int64)
    groups = np.array([e.group for e in examples])
    train_idx, val_idx = split_by_group(groups, labels, config.val_fraction, config.seed)
    if config.smears:
        smear_train, smear_val = smear_examples(config)
        start = len(examples)
        examples = [*examples, *smear_train, *smear_val]
        labels = np.array([e.label for e in examples], np.int64)
        groups = np.array([e.group for e in examples])
        middle = start + len(smear_train)
        positives = [i for i in range(start, middle) if labels[i] == 1]
        extra = positives * max(config.smear_positive_repeat - 1, 0)
        train_idx = np.concatenate([train_idx, np.arange(start, middle), extra]).astype(np.int64)
        val_idx = np.concatenate([val_idx, np.arange(middle, len(examples))]).astype(np.int64)
        log(
            f"smear cells: {len(smear_train)} training ({len(positives)} parasitized, each seen "
            f"{max(config.smear_positive_repeat, 1)}x), {len(smear_val)} validation"
        )
    log(
        f"{len(examples)} images, {len(set(groups))} groups: train {len(train_idx)} images / "
        f"{len(set(groups[train_idx]))} groups, validation {len(val_idx)} images / "
        f"{len(set(groups[val_idx]))} groups"
    )
    started = time.monotonic()
    images = load_or_decode(examples, folder / "cache", "images")
    log(f"images ready ({images.nbytes / 1e6:.0f} MB uint8) in {time.monotonic() - started:.0f}s")
    _write_json(folder / "split.json", split_summary(labels, groups, train_idx, val_idx, config))
    origins = np.array([e.origin for e in examples])
    stages = np.array([e.stage for e in examples])
    return RunData(examples, images, labels, groups, train_idx, val_idx, origins, stages)


def split_summary(labels, groups, train_idx, val_idx, config: TrainConfig) -> dict:
    """Counts and group lists of both sides of the split (for split.json and the card)."""
    from training.data import class_counts

    def side(idx: np.ndarray) -> dict:
        return {
            "images": int(len(idx)),
            "per_class": class_counts(labels[idx]),
            "groups": sorted(set(groups[idx].tolist())),
            "n_groups": len(set(groups[idx].tolist())),
        }

    return {
        "method": (
            "grouped by patient (classifier file-name rule training.data.patient_of); groups "
            "sorted by their fraction of parasitized images, cut into strata of "
            f"{max(2, round(1 / config.val_fraction))} groups, and a seeded draw (seed "
            f"{config.seed}) sends {config.val_fraction:.0%} of each stratum's groups to "
            "validation; no group is on both sides"
        ),
        "val_fraction": config.val_fraction,
        "seed": config.seed,
        "train": side(train_idx),
        "validation": side(val_idx),
    }


# --- callbacks ---------------------------------------------------------------------------------


def _callbacks_module():
    import keras

    class RunState(keras.callbacks.Callback):
        """Validation, early stopping and LR schedule, checkpointing, progress, time budget.

        The best epoch, the plateau and the early stop follow config.selection_metric.

        One callback so that its whole state is in checkpoint/state.json and a resumed run
        continues exactly where it stopped (same patience counters, best weights, LR, history).
        """

        def __init__(
            self, config: TrainConfig, folder: Path, state: dict, log: Log, steps: int, val_ds=None
        ):
            super().__init__()
            self.config, self.folder, self.state, self.log = config, folder, state, log
            self.steps, self.val_ds = steps, val_ds
            self.epoch_started = 0.0

        def on_train_begin(self, logs=None):
            self.epoch_started = time.monotonic()
            lr = self.state.get("lr")
            if lr is not None:
                self.model.optimizer.learning_rate.assign(lr)

        def on_epoch_begin(self, epoch, logs=None):
            self.current_epoch = epoch
            if self.config.lr_schedule == "cosine":
                self.model.optimizer.learning_rate.assign(cosine_lr(self.config, epoch))

        def on_train_batch_end(self, batch, logs=None):
            if batch and batch % 100 == 0:
                elapsed = time.monotonic() - self.epoch_started
                eta = elapsed / batch * (self.steps - batch)
                self.log(
                    f"  epoch {self.current_epoch + 1} batch {batch}/{self.steps} "
                    f"loss={logs.get('loss', float('nan')):.4f} "
                    f"{batch * self.config.batch_size / elapsed:.0f} img/s, epoch ETA {eta:.0f}s"
                )

        def on_epoch_end(self, epoch, logs=None):
            logs = dict(logs or {})
            lr = float(np.asarray(self.model.optimizer.learning_rate))
            # Validate (and keep as best) the weight average if there is one, then train on
            # from the raw weights.
            raw = self._swap_in_average() if self.config.ema_momentum else None
            logs.update(self._validate())
            self._keep_if_best(epoch, logs[self.config.selection_metric])
            if raw is not None:
                self._restore(raw)
            # An epoch's time runs from the end of the previous one (its checkpoint included)
            # to here (validation included), so that the time budget sees every second.
            seconds = time.monotonic() - self.epoch_started
            self._record(epoch, logs, seconds, lr)
            self._plateau(epoch, lr)
            self._report(epoch, logs, seconds, lr)
            self._budget()
            self._save_checkpoint()
            self.epoch_started = time.monotonic()

        def _record(self, epoch, logs, seconds, lr):
            history = self.state.setdefault("history", {})
            for key, value in {**logs, "lr": lr, "seconds": seconds}.items():
                history.setdefault(key, []).append(float(value))
            self.state["epoch"] = epoch + 1
            self.state["fit_seconds"] = self.state.get("fit_seconds", 0.0) + seconds

        def _swap_in_average(self) -> list:
            weights = self.model.trainable_variables
            raw = [np.array(v) for v in weights]
            for variable, average in zip(
                weights, self.model.optimizer._model_variables_moving_average, strict=True
            ):
                variable.assign(average)
            return raw

        def _restore(self, raw: list) -> None:
            for variable, value in zip(self.model.trainable_variables, raw, strict=True):
                variable.assign(value)

        def _validate(self) -> dict[str, float]:
            from training import calibration
            from training.metrics import roc_auc

            probs, labels = [], []
            for x, y in self.val_ds:
                probs.append(np.asarray(self.model(x, training=False), np.float64)[:, 0])
                labels.append(np.asarray(y)[:, 0])
            p, y = np.clip(np.concatenate(probs), 1e-7, 1 - 1e-7), np.concatenate(labels)
            loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
            accuracy = np.mean((p >= 0.5) == (y == 1))
            # The loss of the model as it will be shipped: after temperature scaling. Unlike the
            # raw loss it does not penalise a model for being less confident overall (as label
            # smoothing makes it), only for ranking and separating the images worse.
            logits = calibration.logit(p)
            calibrated = calibration.nll(logits, y, calibration.fit_temperature(logits, y))
            return {
                "val_loss": loss,
                "val_loss_calibrated": calibrated,
                "val_accuracy": accuracy,
                "val_auc": roc_auc(y, p),
            }

        def _keep_if_best(self, epoch, val_loss):
            st = self.state
            st["improved"] = bool(val_loss < st.get("best_val_loss", float("inf")))
            if st["improved"]:
                st.update(best_val_loss=float(val_loss), best_epoch=epoch + 1)
                self.model.save_weights(self.folder / "checkpoint" / "best.weights.h5")

        def _plateau(self, epoch, lr):
            cfg, st = self.config, self.state
            if st.pop("improved"):
                st.update(stop_wait=0, lr_wait=0)
                return
            st["stop_wait"] = st.get("stop_wait", 0) + 1
            st["lr_wait"] = st.get("lr_wait", 0) + 1
            plateau_halving = cfg.lr_schedule == "plateau"
            if plateau_halving and st["lr_wait"] >= cfg.lr_patience and lr > cfg.min_lr:
                new_lr = max(lr * cfg.lr_factor, cfg.min_lr)
                self.model.optimizer.learning_rate.assign(new_lr)
                st["lr_wait"] = 0
                self.log(
                    f"validation loss has not improved for {cfg.lr_patience} epochs: "
                    f"learning rate {lr:.2e} -> {new_lr:.2e}"
                )
            if st["stop_wait"] >= cfg.stop_patience:
                self.model.stop_training = True
                st["stopped_early"] = True
                self.log(f"early stop: no lower validation loss for {cfg.stop_patience} epochs")
            self.state["lr"] = float(np.asarray(self.model.optimizer.learning_rate))

        def _save_checkpoint(self):
            ckpt = self.folder / "checkpoint"
            self.state["lr"] = float(np.asarray(self.model.optimizer.learning_rate))
            tmp = ckpt / "last.tmp.keras"
            self.model.save(tmp)
            os.replace(tmp, ckpt / "last.keras")
            _write_json(ckpt / "state.json", self.state)
            _write_json(self.folder / "history.json", self.state["history"])

        def _report(self, epoch, logs, seconds, lr):
            done = self.state["epoch"]
            mean = self.state["fit_seconds"] / max(len(self.state["history"]["loss"]), 1)
            left = (self.config.epochs - done) * mean
            if self.config.max_minutes:  # the time budget ends the run sooner
                left = min(left, max(self.config.max_minutes * 60 - self.state["fit_seconds"], 0))
            self.log(
                f"epoch {done}/{self.config.epochs} ({seconds:.0f}s) "
                f"loss {logs['loss']:.4f} acc {logs['accuracy']:.4f} auc {logs['auc']:.4f} | "
                f"val_loss {logs['val_loss']:.4f} (after temperature scaling "
                f"{logs['val_loss_calibrated']:.4f}) val_acc {logs['val_accuracy']:.4f} "
                f"val_auc {logs['val_auc']:.4f} | lr {lr:.1e} | best epoch "
                f"{self.state.get('best_epoch')} | ETA {left / 60:.1f} min "
                f"(at most; early stopping may end sooner)"
            )

        def _budget(self):
            limit = self.config.max_minutes
            last_epoch = self.state["epoch"] >= self.config.epochs
            if not limit or self.model.stop_training or last_epoch:
                return
            mean = self.state["fit_seconds"] / len(self.state["history"]["loss"])
            if self.state["fit_seconds"] + mean > limit * 60:
                self.model.stop_training = True
                self.state["stopped_by_budget"] = True
                self.log(f"time budget of {limit:.0f} min would be exceeded by another epoch: stop")

    return RunState


# --- the run -----------------------------------------------------------------------------------


LR_SCHEDULES = ("plateau", "cosine")


def cosine_lr(config: TrainConfig, epoch: int) -> float:
    """The learning rate of a 0-based epoch under the cosine schedule."""
    progress = epoch / max(config.epochs - 1, 1)
    span = config.learning_rate - config.min_lr
    return float(config.min_lr + span * 0.5 * (1.0 + np.cos(np.pi * min(progress, 1.0))))


def load_state(folder: Path) -> dict:
    path = folder / "checkpoint" / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def should_continue(config: TrainConfig, state: dict) -> bool:
    """Whether a (resumed) run has epochs left: not stopped early, under the epoch and time limits.

    A run stopped by its time budget continues when resumed with a larger --max-minutes or
    --epochs; an early-stopped run never trains further.
    """
    done = state.get("epoch", 0)
    if state.get("stopped_early") or done >= config.epochs:
        return False
    if config.max_minutes and done:
        mean = state.get("fit_seconds", 0.0) / done
        return state.get("fit_seconds", 0.0) + mean <= config.max_minutes * 60
    return True


def _model_for(config: TrainConfig, folder: Path, state: dict, log: Log):
    """A fresh compiled model, or the last checkpoint (with its optimizer state) on resume."""
    import keras

    from classifier.architecture import build_model

    last = folder / "checkpoint" / "last.keras"
    if state.get("epoch") and last.exists():
        log(f"resuming after epoch {state['epoch']} from {last}")
        return keras.models.load_model(last)
    model = build_model(config.learning_rate, config.dropout, config.seed)
    if config.init_from:
        _warm_start(model, config, log)
    if config.ema_momentum or config.label_smoothing:
        ema = {"use_ema": True, "ema_momentum": config.ema_momentum} if config.ema_momentum else {}
        model.compile(
            optimizer=keras.optimizers.Adam(config.learning_rate, **ema),
            loss=keras.losses.BinaryCrossentropy(label_smoothing=config.label_smoothing),
            metrics=["accuracy", keras.metrics.AUC(name="auc")],
        )
    return model


def _warm_start(model, config: TrainConfig, log: Log) -> None:
    """Copy the weights of config.init_from (hash-checked) into the fresh network."""
    import keras

    from classifier.registry import sha256_of

    digest = sha256_of(config.init_from)
    if config.init_sha256 and digest != config.init_sha256:
        raise ValueError(
            f"{config.init_from} has SHA-256 {digest}, expected {config.init_sha256}: "
            "the starting weights changed"
        )
    source = keras.models.load_model(config.init_from, compile=False)
    shapes = [w.shape for w in source.get_weights()]
    if shapes != [w.shape for w in model.get_weights()]:
        raise ValueError(f"{config.init_from} is not a model of this architecture")
    model.set_weights(source.get_weights())
    log(f"warm start from {config.init_note or config.init_from} (SHA-256 {digest[:12]}…)")


def fit(config: TrainConfig, folder: Path, run: RunData, log: Log, callbacks: Sequence = ()):
    """Train until early stopping, the epoch limit or the time budget; returns the best model."""
    import keras

    state = load_state(folder)
    model = _model_for(config, folder, state, log)
    aug = Augmentation(**config.augmentation)
    train_ds = make_dataset(
        run.images[run.train_idx],
        run.labels[run.train_idx],
        config.batch_size,
        True,
        config.seed + state.get("epoch", 0),
        aug,
    )
    val_ds = make_dataset(
        run.images[run.val_idx], run.labels[run.val_idx], config.batch_size, False
    )
    steps = int(np.ceil(len(run.train_idx) / config.batch_size))
    keras.utils.set_random_seed(config.seed + state.get("epoch", 0))
    run_state = _callbacks_module()(config, folder, state, log, steps, val_ds)
    if should_continue(config, state):
        state.pop("stopped_by_budget", None)
        model.fit(
            train_ds,
            epochs=config.epochs,
            initial_epoch=state.get("epoch", 0),
            callbacks=[run_state, *callbacks],
            verbose=0,
            shuffle=False,  # the dataset reshuffles itself every epoch (seeded)
        )
    _write_json(folder / "checkpoint" / "state.json", state)
    best = folder / "checkpoint" / "best.weights.h5"
    if best.exists():
        model.load_weights(best)
        log(f"restored the weights of epoch {state.get('best_epoch')} (lowest validation loss)")
    return model, state


def prepare_folder(config: TrainConfig, resume: bool) -> Path:
    folder = Path(config.output)
    if not resume and (folder / "checkpoint" / "state.json").exists():
        raise FileExistsError(f"{folder} already holds a run; pass --resume or another --name")
    (folder / "checkpoint").mkdir(parents=True, exist_ok=True)
    config.save(folder)
    return folder


def train(config: TrainConfig, resume: bool = False, log: Log = print, callbacks: Sequence = ()):
    """The whole run: data, fit, then finalize (calibrate, card, register). Returns the version."""
    folder = prepare_folder(config, resume)
    run = prepare_data(config, folder, log)
    started = time.monotonic()
    model, state = fit(config, folder, run, log, callbacks)
    log(f"fit finished after {state.get('epoch')} epochs in {time.monotonic() - started:.0f}s")
    from training.finalize import finalize

    return finalize(config, folder, run, model, state, log)
