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
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.data import Example, list_folder, load_or_decode, split_by_group
from training.finalize import finalize
from training.pipeline import Augmentation, make_dataset
from training.run import Log, RunData, TrainConfig, write_json


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
    write_json(folder / "split.json", split_summary(labels, groups, train_idx, val_idx, config))
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


# --- the run -----------------------------------------------------------------------------------


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

    from classifier.hashing import sha256_of

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
    from training.callbacks import RunState  # imports Keras: only once a fit starts

    run_state = RunState(config, folder, state, log, steps, val_ds)
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
    write_json(folder / "checkpoint" / "state.json", state)
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
    return finalize(config, folder, run, model, state, log)
