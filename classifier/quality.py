"""The quality gate: an image that is not a usable stained blood cell never gets a confident label.

Two kinds of evidence, both cheap:
- image statistics at a fixed size (150x150), over the foreground (NIH crops pad the cell with
  black, which is not "under-exposed"): dynamic range (blank frame), clipped highlights and dark
  frames (exposure), variance of the Laplacian inside the foreground divided by the foreground's
  contrast (focus, independent of stain intensity), the spread of the foreground's chroma, and the share of foreground pixels with the
  colours of a Giemsa smear (pink, red, purple, violet, or pale/neutral);
- the distance of the network's 128-d penultimate ('dense') features from the training images':
  root-mean-square of per-dimension z-scores (a diagonal Mahalanobis distance), flagged above the
  99.5th percentile seen on training data times a margin. Needs a reference from build_reference().

The image thresholds are fixed defaults measured on the NIH cells (>99% pass) and on generated
non-cell images (blank, saturated, noise, heavy blur, landscape-like colours: all flagged); a
reference may override any of them under "image_thresholds". No Django or TensorFlow imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from classifier.architecture import INPUT_SIZE
from classifier.preprocess import check_shape, resize_rgb

FLAG_BLANK = "blank frame"
FLAG_OVEREXPOSED = "over-exposed"
FLAG_UNDEREXPOSED = "under-exposed"
FLAG_BLURRED = "blurred"
FLAG_COLOURS = "colours unlike a stained blood smear"
FLAG_TEXTURE = "noisy or textured unlike a blood cell"
FLAG_UNFAMILIAR = "unlike the training images"

DEFAULT_THRESHOLDS: dict[str, float] = {
    "padding_level": 20.0,  # max channel at or below this is padding (NIH crops are black-padded)
    "min_foreground_fraction": 0.10,
    "min_dynamic_range": 20.0,  # gray p99 - p1 over the whole frame, padding included
    "max_clipped_fraction": 0.20,  # foreground pixels with every channel >= 250
    "min_foreground_brightness": 60.0,
    # Focus = var(Laplacian) / (std + 2)^2 inside the cell. NIH cells: 0.16 min, 0.41 at the
    # 0.5th percentile, 15.6 max; a synthetic cell blurred with sigma 6: 0.02; pure noise: 56.
    "min_focus": 0.12,
    "max_focus": 30.0,
    # NIH cells: stain fraction 0.92 at the 0.5th percentile; noise ~0.5, green/blue scenes ~0.
    "min_stain_fraction": 0.70,
    # Std of the foreground's Cr/Cb chroma (YCrCb units). NIH max 20, synthetic cells 22;
    # noise 57, colourful texture 47.
    "max_colour_spread": 32.0,
    "feature_margin": 1.5,  # x the training 99.5th percentile of feature distances
}


@dataclass(frozen=True)
class QualityResult:
    ok: bool
    flags: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


def image_metrics(rgb_uint8: np.ndarray, padding_level: float = 20.0) -> dict[str, float]:
    """Image statistics at 150x150 (see the module docstring); all plain floats.

    Written with OpenCV masked reductions rather than numpy fancy indexing: it runs for every
    cell the engine sees, and costs well under a millisecond per image. Raises
    classifier.preprocess.ImageShapeError for an image that cannot be a cell.
    """
    import cv2

    check_shape(rgb_uint8, "cell")

    rgb = resize_rgb(np.ascontiguousarray(rgb_uint8, dtype=np.uint8), INPUT_SIZE)
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    hue, saturation, value = cv2.split(hsv)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    # V = max(R, G, B): padding is where every channel is dark.
    foreground = (value > padding_level).astype(np.uint8)
    n_fg = int(cv2.countNonZero(foreground))
    cumulative = np.cumsum(np.bincount(gray.ravel(), minlength=256)) / gray.size
    p1, p99 = np.searchsorted(cumulative, 0.01), np.searchsorted(cumulative, 0.99)
    metrics = {
        "foreground_fraction": n_fg / foreground.size,
        "dynamic_range": float(p99 - p1),
        "clipped_fraction": 0.0,
        "foreground_brightness": 0.0,
        "focus": 0.0,
        "stain_fraction": 0.0,
        "colour_spread": 0.0,
    }
    if n_fg < 16:
        return metrics
    red, green, blue = cv2.split(rgb)
    darkest = cv2.min(cv2.min(red, green), blue)
    metrics["clipped_fraction"] = int(cv2.countNonZero((darkest >= 250) & (foreground > 0))) / n_fg
    metrics["foreground_brightness"] = float(cv2.mean(gray, mask=foreground)[0])
    # Focus inside the eroded foreground, so the edge against the black padding does not count.
    inner = cv2.erode(foreground, np.ones((5, 5), np.uint8))
    if cv2.countNonZero(inner) >= 16:
        laplacian = cv2.Laplacian(gray, cv2.CV_32F, ksize=3)
        _, lap_std = cv2.meanStdDev(laplacian, mask=inner)
        _, gray_std = cv2.meanStdDev(gray, mask=inner)
        metrics["focus"] = float(lap_std[0, 0] ** 2 / (gray_std[0, 0] + 2.0) ** 2)
    # OpenCV hue is 0-179: red/pink 0-25 and 150-179, violet/purple 115-150, and Giemsa's
    # blue-violet 100-115 (parasite cytoplasm; whole smears of some NIH patients are that tint,
    # and the hue cut at 115 dropped their parasitized cells 4x as often as uninfected ones);
    # or pale/neutral.
    stain = ((hue <= 25) | (hue >= 100) | (saturation < 40)) & (foreground > 0)
    metrics["stain_fraction"] = int(cv2.countNonZero(stain.view(np.uint8))) / n_fg
    _, chroma_std = cv2.meanStdDev(cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb), mask=foreground)
    metrics["colour_spread"] = float(np.hypot(chroma_std[1, 0], chroma_std[2, 0]))
    return metrics


def _rms_z(features: np.ndarray, stats: dict) -> float:
    mean = np.asarray(stats["mean"], dtype=np.float64)
    std = np.asarray(stats["std"], dtype=np.float64)
    z = (np.asarray(features, dtype=np.float64).ravel() - mean) / std
    return float(np.sqrt(np.mean(z**2)))


def feature_distance(features: np.ndarray, reference: dict) -> float | None:
    """How far the features lie from the training images', in units of the pooled reference's
    99.5th percentile distance (so the flag limit is the margin), or None without a reference.

    With per-class statistics (references built with labels), the distance is to the nearer
    class: a strongly parasitized cell has extreme features for the pooled distribution but
    ordinary ones among parasitized cells, and must not be dropped for it (measured on NIH
    cells: the pooled distance dropped parasitized cells more often than uninfected ones).
    """
    stats = (reference or {}).get("features")
    if not stats or features is None:
        return None
    by_class = stats.get("by_class")
    if by_class:
        scaled = [_rms_z(features, s) / float(s["distance_p995"]) for s in by_class.values()]
        return min(scaled) * float(stats["distance_p995"])
    return _rms_z(features, stats)


def thresholds_for(reference: dict | None) -> dict[str, float]:
    return {**DEFAULT_THRESHOLDS, **((reference or {}).get("image_thresholds") or {})}


def assess(
    rgb_uint8: np.ndarray, features: np.ndarray | None, reference: dict | None
) -> QualityResult:
    """Judge one image; ok is False when any flag is raised. reference may be None or {}."""
    t = thresholds_for(reference)
    m = image_metrics(rgb_uint8, t["padding_level"])
    flags: list[str] = []
    if m["dynamic_range"] < t["min_dynamic_range"] or (
        m["foreground_fraction"] < t["min_foreground_fraction"]
    ):
        flags.append(FLAG_BLANK)
    if m["clipped_fraction"] > t["max_clipped_fraction"]:
        flags.append(FLAG_OVEREXPOSED)
    if m["foreground_fraction"] and m["foreground_brightness"] < t["min_foreground_brightness"]:
        flags.append(FLAG_UNDEREXPOSED)
    if FLAG_BLANK not in flags:
        if m["focus"] < t["min_focus"]:
            flags.append(FLAG_BLURRED)
        elif m["focus"] > t["max_focus"]:
            flags.append(FLAG_TEXTURE)
        if (
            m["stain_fraction"] < t["min_stain_fraction"]
            or m["colour_spread"] > t["max_colour_spread"]
        ):
            flags.append(FLAG_COLOURS)
    distance = feature_distance(features, reference or {})
    if distance is not None:
        m["feature_distance"] = distance
        limit = float(reference["features"]["distance_p995"]) * t["feature_margin"]
        m["feature_distance_limit"] = limit
        if distance > limit:
            flags.append(FLAG_UNFAMILIAR)
    return QualityResult(ok=not flags, flags=flags, metrics=m)


def _feature_stats(features: np.ndarray) -> dict[str, Any]:
    mean = features.mean(axis=0)
    # A dimension that never varies (a dead ReLU) would divide by zero: give it a floor.
    std = np.maximum(features.std(axis=0), 1e-3 * max(float(features.std()), 1e-6))
    distances = np.sqrt((((features - mean) / std) ** 2).mean(axis=1))
    return {
        "mean": mean.round(6).tolist(),
        "std": std.round(6).tolist(),
        "distance_p50": float(np.percentile(distances, 50)),
        "distance_p995": float(np.percentile(distances, 99.5)),
        "n": int(len(features)),
    }


def build_reference(
    model_or_engine: Any, x_float_batch: np.ndarray, labels: np.ndarray | None = None
) -> dict[str, Any]:
    """Reference statistics of training images for the quality gate (JSON-serialisable).

    x_float_batch: preprocessed training inputs (n, 150, 150, 3) float32 in [0, 1], a few hundred
    to a few thousand of them. Stores the feature mean/std and the percentiles of the training
    images' own feature distances (pooled, and per class when labels are given, 1 =
    parasitized), plus percentiles of the image metrics for the model card.
    """
    features = _features_of(model_or_engine, x_float_batch).astype(np.float64)
    pooled = _feature_stats(features)
    if labels is not None:
        labels = np.asarray(labels).ravel()
        by_class = {
            str(int(value)): _feature_stats(features[labels == value])
            for value in np.unique(labels)
            if (labels == value).sum() >= 20
        }
        if len(by_class) == 2:
            pooled["by_class"] = by_class
    rgb = np.clip(np.asarray(x_float_batch) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    per_image = [image_metrics(img) for img in rgb]
    image_percentiles = {
        key: [float(v) for v in np.percentile([m[key] for m in per_image], [0.5, 50, 99.5])]
        for key in per_image[0]
    }
    return {
        "version": 1,
        "n": int(len(features)),
        "features": {"layer": "dense", **pooled},
        "image_metric_percentiles": image_percentiles,  # [p0.5, p50, p99.5], informational
    }


def _features_of(model_or_engine: Any, x: np.ndarray) -> np.ndarray:
    if hasattr(model_or_engine, "features"):
        return np.asarray(model_or_engine.features(x))
    import keras

    extractor = keras.Model(model_or_engine.inputs, model_or_engine.get_layer("dense").output)
    return np.asarray(extractor.predict(x, batch_size=64, verbose=0))
