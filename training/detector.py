"""Train and evaluate the cell detector (classifier.detector) on annotated field photographs.

A run lives in one output folder::

    config.json                the options (a resume reuses them)
    checkpoint/last.keras      model + optimizer after the last finished epoch
    checkpoint/best.keras      the epoch with the best validation F1 (IoU 0.5)
    checkpoint/state.json      epoch, history, best epoch, timings
    model.keras, result.json   written once training has stopped (threshold chosen on validation)

Fields are rescaled exactly as at serving time (classifier.detector.work_scale), then random
256x256 windows are cut with scale, flip, rotation and stain/camera colour jitter. Validation
runs the real Detector.detect on the held-out photographs at full size. No Django here.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from classifier import detector as det
from training.run import half_cosine
from training.smears import AnnotatedField, DetectionTally, load_fields, split_fields

Log = Callable[[str], None]
WINDOW = 256
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.15, 0.71, 0.05))


@dataclass
class DetectorConfig:
    data: str
    name: str
    output: str
    epochs: int = 30
    windows_per_field: int = 8
    batch_size: int = 16
    learning_rate: float = 2e-3
    min_lr: float = 5e-5
    val_fraction: float = 0.15
    seed: int = 42
    max_minutes: float | None = None
    colour_jitter: float = 1.0


@dataclass
class PreparedField:
    """A training field at work scale: the image and its boxes in work pixels."""

    work: np.ndarray
    boxes: np.ndarray


def prepare(field: AnnotatedField) -> PreparedField:
    rgb = field.read()
    scale = det.work_scale(rgb)
    height, width = rgb.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    work = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return PreparedField(work, field.boxes * scale)


def colour_jitter(rgb: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Stain and camera variation: hue, saturation, per-channel gain, brightness, contrast, gamma."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-12, 12) * strength) % 180
    hsv[..., 1] *= 1 + rng.uniform(-0.4, 0.4) * strength
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    out *= 1 + rng.uniform(-0.12, 0.12, 3) * strength
    mean = out.mean()
    out = (out - mean) * (1 + rng.uniform(-0.3, 0.3) * strength) + mean * (
        1 + rng.uniform(-0.15, 0.15) * strength
    )
    out = 255.0 * (np.clip(out, 0, 255) / 255.0) ** (1 + rng.uniform(-0.3, 0.3) * strength)
    if rng.random() < 0.3 * strength:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.2))
    return np.clip(out + rng.normal(0, 2.0, out.shape), 0, 255).astype(np.uint8)


def random_window(
    field: PreparedField, rng: np.random.Generator, jitter: float
) -> tuple[np.ndarray, np.ndarray]:
    """One augmented WINDOW x WINDOW training window and its (W/4, W/4, 6) target."""
    zoom = math.exp(rng.uniform(math.log(0.75), math.log(1.33)))
    span = WINDOW / zoom
    height, width = field.work.shape[:2]
    x0 = rng.uniform(-0.15 * span, max(width - 0.85 * span, 1))
    y0 = rng.uniform(-0.15 * span, max(height - 0.85 * span, 1))
    matrix = np.array([[zoom, 0, -x0 * zoom], [0, zoom, -y0 * zoom]], np.float32)
    fill = tuple(int(v) for v in np.median(field.work.reshape(-1, 3)[::97], axis=0))
    window = cv2.warpAffine(
        field.work, matrix, (WINDOW, WINDOW), flags=cv2.INTER_LINEAR, borderValue=fill
    )
    boxes = field.boxes.copy()
    boxes[:, :2] = (boxes[:, :2] - [x0, y0]) * zoom
    boxes[:, 2:] *= zoom
    boxes = _clip_to_window(boxes)
    if rng.random() < 0.5:
        window = window[:, ::-1]
        boxes[:, 0] = WINDOW - boxes[:, 0] - boxes[:, 2]
    for _ in range(int(rng.integers(4))):  # rotate by 90 degrees counter-clockwise
        window = np.rot90(window)
        boxes = np.stack(
            [boxes[:, 1], WINDOW - boxes[:, 0] - boxes[:, 2], boxes[:, 3], boxes[:, 2]], 1
        )
    window = colour_jitter(np.ascontiguousarray(window), rng, jitter)
    return window, det.encode_targets(boxes, WINDOW, WINDOW)


def _clip_to_window(boxes: np.ndarray) -> np.ndarray:
    """Boxes clipped to the window; a cell mostly outside it is dropped (as the image edge does)."""
    x0, y0 = np.clip(boxes[:, 0], 0, WINDOW), np.clip(boxes[:, 1], 0, WINDOW)
    x1 = np.clip(boxes[:, 0] + boxes[:, 2], 0, WINDOW)
    y1 = np.clip(boxes[:, 1] + boxes[:, 3], 0, WINDOW)
    kept = (x1 - x0) * (y1 - y0) >= 0.2 * boxes[:, 2] * boxes[:, 3]
    kept &= (x1 - x0 >= 3) & (y1 - y0 >= 3)
    return np.stack([x0, y0, x1 - x0, y1 - y0], 1)[kept]


def evaluate_detector(
    detector: det.Detector,
    fields: Sequence[AnnotatedField],
    thresholds: Sequence[float] | None = None,
) -> dict:
    """Precision, recall, F1 at IoU 0.5 and count error at the detector's threshold (or each of
    `thresholds`, as {threshold: figures}); the network runs once per field."""
    limits = list(thresholds) if thresholds else [detector.threshold]
    tallies = {t: DetectionTally() for t in limits}
    seconds = 0.0
    for field in fields:
        rgb = field.read()
        height, width = rgb.shape[:2]
        started = time.perf_counter()
        scale = det.work_scale(rgb)
        output = detector.raw_output(det.to_work(rgb, scale))
        for limit in limits:
            cells = det.decode(output, limit, scale, width, height)
            if limit == limits[0]:
                seconds += time.perf_counter() - started
            predicted = np.array([[c.x, c.y, c.w, c.h] for c in cells], float).reshape(-1, 4)
            predicted_border = np.array([c.on_border for c in cells], bool)
            truth_border = field.on_border(width, height)
            tallies[limit].add(predicted, predicted_border, field.boxes, truth_border)
    per = {t: {**tally.summary(), "threshold": t} for t, tally in tallies.items()}
    for figures in per.values():
        figures["seconds_per_field"] = round(seconds / max(len(fields), 1), 4)
    return per if thresholds else per[limits[0]]


def choose_threshold(per_threshold: dict) -> float:
    """The threshold with the best F1 on cells inside the image (the ones a lab's count is made
    of; annotators box edge cells inconsistently); ties go to the smaller count error."""
    return max(
        per_threshold,
        key=lambda t: (per_threshold[t]["interior_f1"], -per_threshold[t]["count_error_pct"]),
    )


def _open_run(config: DetectorConfig, resume: bool) -> tuple[DetectorConfig, dict | None]:
    """The run's config (the stored one on resume) and its saved state, if any."""
    out = Path(config.output)
    checkpoint = out / "checkpoint"
    state = None
    if resume:
        config = DetectorConfig(**json.loads((out / "config.json").read_text()))
        state_path = checkpoint / "state.json"
        state = json.loads(state_path.read_text()) if state_path.exists() else None
    elif checkpoint.exists():
        raise FileExistsError(f"{out} already holds a run: use --resume or another --output")
    checkpoint.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
    return config, state


def _model_and_state(config: DetectorConfig, state: dict | None, log: Log):
    import keras

    last = Path(config.output) / "checkpoint" / "last.keras"
    if state is not None and last.exists():
        log(f"resuming after epoch {state['epoch']}")
        custom = {"detection_loss": det.detection_loss}
        return keras.saving.load_model(last, custom_objects=custom), state
    model = det.build_detector(config.learning_rate, seed=config.seed)
    return model, {"epoch": 0, "history": [], "best_f1": -1.0, "best_epoch": 0, "seconds": 0.0}


def cosine_lr(config: DetectorConfig, epoch: int) -> float:
    """The learning rate of a 1-based epoch: half a cosine from learning_rate to min_lr."""
    progress = (epoch - 1) / max(config.epochs - 1, 1)
    return half_cosine(config.learning_rate, config.min_lr, progress)


def _windows(prepared: Sequence[PreparedField], config: DetectorConfig, rng) -> tuple:
    pairs = [
        random_window(field, rng, config.colour_jitter)
        for field in prepared
        for _ in range(config.windows_per_field)
    ]
    return np.stack([w for w, _ in pairs]).astype(np.float32) / 255.0, np.stack(
        [t for _, t in pairs]
    )


def _validate(model, val_fields: Sequence[AnnotatedField]) -> dict:
    """The epoch's figures at its own best threshold (the one finish() would choose)."""
    if not val_fields:
        return {"interior_f1": 0.0, "threshold": None}
    per = evaluate_detector(det.Detector(model=model), val_fields, THRESHOLDS)
    return per[choose_threshold(per)]


def train_detector(config: DetectorConfig, resume: bool = False, log: Log = print) -> dict:
    """Train (or resume) a detector run; returns result.json's content (model path, threshold,
    validation figures, history) and the run's config."""
    config, state = _open_run(config, resume)
    out, checkpoint = Path(config.output), Path(config.output) / "checkpoint"
    train_fields, val_fields = split_fields(load_fields(config.data), config.val_fraction)
    log(f"{len(train_fields)} training fields, {len(val_fields)} validation fields (held out)")
    split = {"train": [f.name for f in train_fields], "validation": [f.name for f in val_fields]}
    (out / "split.json").write_text(json.dumps(split))
    started = time.perf_counter()
    prepared = [prepare(f) for f in train_fields]
    log(f"fields prepared at work scale in {time.perf_counter() - started:.0f} s")
    model, state = _model_and_state(config, state, log)
    rng = np.random.default_rng(config.seed + state["epoch"])
    budget = config.max_minutes * 60 if config.max_minutes else None
    while state["epoch"] < config.epochs:
        if budget is not None and state["seconds"] >= budget:
            log(f"time budget of {config.max_minutes} min reached")
            break
        epoch_started, epoch = time.perf_counter(), state["epoch"] + 1
        lr = cosine_lr(config, epoch)
        model.optimizer.learning_rate.assign(lr)
        x, y = _windows(prepared, config, rng)
        fit = model.fit(x, y, batch_size=config.batch_size, epochs=1, shuffle=True, verbose=0)
        figures = _validate(model, val_fields)
        seconds = time.perf_counter() - epoch_started
        _record_epoch(state, epoch, float(fit.history["loss"][-1]), lr, seconds, figures)
        if state["best_epoch"] == epoch:
            model.save(checkpoint / "best.keras")
        model.save(checkpoint / "last.keras")
        (checkpoint / "state.json").write_text(json.dumps(state, indent=2))
        log(_epoch_line(config, state, figures))
    return {**finish(out, state, val_fields, log), "config": asdict(config)}


def _record_epoch(state: dict, epoch: int, loss: float, lr: float, seconds: float, figures: dict):
    state["seconds"] += seconds
    state["epoch"] = epoch
    row = {"epoch": epoch, "loss": round(loss, 4), "lr": lr, "seconds": round(seconds, 1)}
    keys = ("threshold", "precision", "recall", "interior_f1", "count_error_pct")
    row.update({k: figures.get(k) for k in keys})
    state["history"].append(row)
    if figures["interior_f1"] > state["best_f1"]:
        state["best_f1"], state["best_epoch"] = figures["interior_f1"], epoch


def _epoch_line(config: DetectorConfig, state: dict, figures: dict) -> str:
    row = state["history"][-1]
    eta = (config.epochs - state["epoch"]) * state["seconds"] / state["epoch"]
    return (
        f"epoch {state['epoch']}/{config.epochs}: loss {row['loss']:.4f}; validation at "
        f"threshold {figures.get('threshold')}: precision {figures.get('precision')}, recall "
        f"{figures.get('recall')}, interior F1 {figures.get('interior_f1')}, count error "
        f"{figures.get('count_error_pct')}% ({row['seconds']:.0f} s, ETA {eta / 60:.1f} min)"
    )


def finish(out: Path, state: dict, val_fields: Sequence[AnnotatedField], log: Log) -> dict:
    """Pick the best epoch's model, choose its threshold on validation, write result.json."""
    import keras

    best = out / "checkpoint" / "best.keras"
    if not best.exists():
        best = out / "checkpoint" / "last.keras"
    model = keras.saving.load_model(best, compile=False)
    inference = keras.Model(model.inputs, model.outputs, name="cell_detector")
    model_path = out / "model.keras"
    inference.save(model_path)
    detector = det.Detector.load(str(model_path))
    threshold, validation = det.DEFAULT_THRESHOLD, {}
    if val_fields:
        per = evaluate_detector(detector, val_fields, THRESHOLDS)
        threshold = choose_threshold(per)
        validation = per[threshold]
        log(
            f"threshold {threshold} on the {len(val_fields)} validation fields: precision "
            f"{validation['precision']}, recall {validation['recall']}, count error "
            f"{validation['count_error_pct']}%"
        )
    result = {
        "model": str(model_path),
        "threshold": threshold,
        "validation": validation,
        "validation_fields": [f.name for f in val_fields],
        "best_epoch": state["best_epoch"],
        "epochs_run": state["epoch"],
        "training_minutes": round(state["seconds"] / 60, 1),
        "history": state["history"],
    }
    (out / "result.json").write_text(json.dumps(result, indent=2))
    return result


def copy_model(result: dict, destination: Path) -> Path:
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(result["model"], destination)
    return destination
