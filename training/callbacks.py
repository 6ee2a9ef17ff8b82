"""The Keras callback that runs a training run's epochs: validation, early stopping, the LR
schedule, checkpointing, progress and the time budget.

Importing this module imports Keras (and so TensorFlow): training.train imports it only when a fit
starts, so that the run's options, data preparation and management commands load without it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import keras
import numpy as np

from training import calibration
from training.metrics import roc_auc
from training.run import Log, TrainConfig, cosine_lr, write_json


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
        write_json(ckpt / "state.json", self.state)
        write_json(self.folder / "history.json", self.state["history"])

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
