"""The analysis engine: a batch of RGB cells in, probability + label + Grad-CAM + quality out.

One compiled call per batch runs the network forward AND back-propagates to the last conv layer,
so the Grad-CAM map costs only the small backward pass through the head, not a second forward
pass per image. Grad-CAM target: the pre-sigmoid logit of the single output unit (computed from
the last Dense layer's weights, so it is exact rather than log(p/(1-p)) of a rounded p). Gradients
of the logit are free of sigmoid saturation, so confident cells still get a meaningful map.

Calibration (classifier.calibration): p = sigmoid(logit / temperature); label "parasitized" when p >= threshold. A cell that
fails the quality gate (classifier.quality) gets the label "ungradable" instead: the model's
opinion is kept in ``model_label`` but it is never presented as a confident result.

TensorFlow is imported lazily, so importing this module (for ModelIntegrityError, the labels or the
result type) is safe in the web process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from classifier.architecture import INPUT_SIZE, LAST_CONV_LAYER
from classifier.calibration import calibrate
from classifier.domain import cell_colour
from classifier.hashing import sha256_of
from classifier.preprocess import check_shape, resize_rgb, to_input
from classifier.quality import QualityResult, assess

LABEL_PARASITIZED = "parasitized"
LABEL_UNINFECTED = "uninfected"
LABEL_UNGRADABLE = "ungradable"

FEATURE_LAYER = "dense"
OUTPUT_LAYER = "probability"
DEFAULT_BATCH_SIZE = 32


class ModelIntegrityError(RuntimeError):
    """The model file's SHA-256 does not match the registry: it is refused, never loaded."""


@dataclass(frozen=True)
class CellResult:
    """The analysis of one cell image."""

    probability: float  # calibrated P(parasitized) = sigmoid(logit / temperature)
    raw_probability: float  # the network's own sigmoid output
    logit: float
    label: str  # parasitized | uninfected | ungradable (quality gate failed)
    model_label: str  # parasitized | uninfected, whatever the quality gate says
    heatmap: np.ndarray  # float32 (H, W) in [0, 1], the original image's size
    features: np.ndarray  # float32 (128,), the 'dense' layer output (quality gate input)
    quality: QualityResult
    colour: np.ndarray | None = None  # float32 (6,), classifier.domain.cell_colour (domain guard)


def upsample_heatmap(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of a small [0, 1] map to (height, width), float32, clipped to [0, 1]."""
    import cv2

    resized = cv2.resize(cam.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(resized, 0.0, 1.0)


class Engine:
    """A loaded model ready to analyse batches. Build once per worker process; not thread-safe."""

    def __init__(
        self,
        model: Any,
        threshold: float = 0.5,
        temperature: float = 1.0,
        quality_reference: dict | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        jit_compile: bool = False,
    ) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.model = model
        self.threshold = float(threshold)
        self.temperature = float(temperature)
        self.quality_reference = quality_reference or {}
        self.batch_size = int(batch_size)
        self._step = build_gradcam_step(model, jit_compile=jit_compile)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        expected_sha256: str,
        threshold: float = 0.5,
        temperature: float = 1.0,
        quality_reference: dict | None = None,
        **kwargs: Any,
    ) -> Engine:
        """Load a .keras file after checking its SHA-256 (fail closed: mismatch -> no load)."""
        actual = sha256_of(path)
        if actual.lower() != (expected_sha256 or "").strip().lower():
            raise ModelIntegrityError(
                f"model file {os.fspath(path)!r} has SHA-256 {actual}, but the registry expects "
                f"{expected_sha256!r}; refusing to load it"
            )
        import keras

        model = keras.saving.load_model(os.fspath(path), compile=False)
        return cls(model, threshold, temperature, quality_reference, **kwargs)

    def run_batch(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The raw compiled call on preprocessed inputs (n, 150, 150, 3) float32 in [0, 1].

        Returns numpy arrays: logit (n,), probability (n,) (uncalibrated sigmoid), cam (n, 34, 34)
        Grad-CAM maps in [0, 1] on the conv grid, and features (n, 128).
        """
        logit, cam, features = self._step(np.ascontiguousarray(x, dtype=np.float32))
        logit = logit.numpy()
        return {
            "logit": logit,
            "probability": calibrate(logit, 1.0),
            "cam": cam.numpy(),
            "features": features.numpy(),
        }

    def features(self, x: np.ndarray) -> np.ndarray:
        """Penultimate ('dense') features of preprocessed inputs, in batches."""
        parts = [
            self.run_batch(x[i : i + self.batch_size])["features"]
            for i in range(0, len(x), self.batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, 128), np.float32)

    def analyse(self, images: Sequence[np.ndarray]) -> list[CellResult]:
        """Analyse RGB uint8 cell crops of any size; one compiled call per batch_size images.

        Raises classifier.preprocess.ImageShapeError, before any work, when one of the images
        cannot be a cell (check each with classifier.preprocess.check_shape(rgb, "cell") first
        to fail only that one).
        """
        for rgb in images:
            check_shape(np.asarray(rgb), "cell")
        results: list[CellResult] = []
        for start in range(0, len(images), self.batch_size):
            results.extend(self._analyse_chunk(images[start : start + self.batch_size]))
        return results

    def _analyse_chunk(self, images: Sequence[np.ndarray]) -> list[CellResult]:
        small = [resize_rgb(np.asarray(rgb, dtype=np.uint8)) for rgb in images]
        out = self.run_batch(np.stack([to_input(rgb) for rgb in small]))
        calibrated = calibrate(out["logit"], self.temperature)
        results = []
        for i, rgb in enumerate(images):
            quality = assess(small[i], out["features"][i], self.quality_reference)
            model_label = LABEL_PARASITIZED if calibrated[i] >= self.threshold else LABEL_UNINFECTED
            results.append(
                CellResult(
                    probability=float(calibrated[i]),
                    raw_probability=float(out["probability"][i]),
                    logit=float(out["logit"][i]),
                    label=model_label if quality.ok else LABEL_UNGRADABLE,
                    model_label=model_label,
                    heatmap=upsample_heatmap(out["cam"][i], rgb.shape[0], rgb.shape[1]),
                    features=out["features"][i],
                    quality=quality,
                    colour=cell_colour(small[i]),
                )
            )
        return results


def gradcam_submodel(model: Any) -> Any:
    """A view of the model with outputs [conv3 activations, dense features, output-layer input]."""
    import keras

    output_layer = model.get_layer(OUTPUT_LAYER)
    if output_layer.activation is not keras.activations.sigmoid:
        raise ValueError(f"layer {OUTPUT_LAYER!r} must end in a sigmoid for Grad-CAM on its logit")
    return keras.Model(
        model.inputs,
        [
            model.get_layer(LAST_CONV_LAYER).output,
            model.get_layer(FEATURE_LAYER).output,
            output_layer.input,
        ],
    )


def build_gradcam_step(model: Any, jit_compile: bool = False):
    """The compiled batch step x -> (logit (n,), Grad-CAM (n, h, w) in [0, 1], features (n, 128)).

    The target is the sum of per-image logits: images do not interact at inference (no batch
    statistics), so its gradient w.r.t. each image's conv activations is that image's own gradient.
    Fixed input signature: one trace serves every batch size.
    """
    import tensorflow as tf

    submodel = gradcam_submodel(model)
    output_layer = model.get_layer(OUTPUT_LAYER)
    kernel, bias = output_layer.kernel, output_layer.bias

    @tf.function(
        input_signature=[tf.TensorSpec((None, INPUT_SIZE, INPUT_SIZE, 3), tf.float32)],
        jit_compile=jit_compile,
        reduce_retracing=True,
    )
    def step(x):
        with tf.GradientTape() as tape:
            conv, features, penultimate = submodel(x, training=False)
            logit = tf.squeeze(tf.matmul(penultimate, kernel) + bias, axis=-1)
            target = tf.reduce_sum(logit)
        grads = tape.gradient(target, conv)
        return logit, gradcam_from(conv, grads), features

    return step


def gradcam_from(conv: Any, grads: Any) -> Any:
    """ReLU(sum_k alpha_k A_k), alpha_k = spatial mean of dlogit/dA_k; each map divided by its max.

    A map that is zero everywhere (no positive evidence) stays zero instead of dividing by zero.
    """
    import tensorflow as tf

    alpha = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(alpha * conv, axis=-1))
    peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
    return tf.where(peak > 1e-12, cam / tf.maximum(peak, 1e-12), tf.zeros_like(cam))
