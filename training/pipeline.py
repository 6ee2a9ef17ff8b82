"""The tf.data input pipeline: cached uint8 images -> augmented float batches, prefetched.

Images stay uint8 in memory (4x smaller than float); a batch is gathered by index, converted
exactly as classifier.preprocess.to_input does (/255), augmented in one vectorised step per
batch and prefetched while the model trains on the previous one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Augmentation:
    """Random changes applied per training image (never to validation or evaluation images)."""

    flips: bool = True
    rot90: bool = True
    brightness: float = 0.08  # added to [0, 1] values, +-
    contrast: float = 0.15  # factor 1 +- this around the image mean
    saturation: float = 0.20  # factor 1 +- this on HSV saturation
    hue: float = 0.03  # shift of HSV hue (fraction of the circle), +-

    def as_dict(self) -> dict[str, float | bool]:
        return asdict(self)

    @classmethod
    def scaled(cls, factor: float) -> Augmentation:
        """The default geometry with every colour change (stain, camera) scaled by factor."""
        if factor < 0:
            raise ValueError("the colour-jitter factor cannot be negative")
        base = cls()
        return cls(
            brightness=base.brightness * factor,
            contrast=base.contrast * factor,
            saturation=base.saturation * factor,
            hue=base.hue * factor,
        )


def _uniform(n, spread: float, centre: float = 0.0):
    import tensorflow as tf

    return tf.random.uniform([n, 1, 1, 1], centre - spread, centre + spread)


def _geometric(x, aug: Augmentation):
    """Flips and 90-degree rotations: the cell's orientation on the slide means nothing."""
    import tensorflow as tf

    n = tf.shape(x)[0]
    if aug.flips:
        flip = tf.random.uniform([n, 1, 1, 1]) < 0.5
        x = tf.where(flip, tf.reverse(x, axis=[2]), x)
    if aug.rot90:
        transposed = tf.transpose(x, [0, 2, 1, 3])
        quarter = tf.random.uniform([n, 1, 1, 1]) < 0.5
        x = tf.where(quarter, tf.reverse(transposed, axis=[2]), x)  # 90 degrees
        half = tf.random.uniform([n, 1, 1, 1]) < 0.5
        x = tf.where(half, tf.reverse(x, axis=[1, 2]), x)  # + 180 degrees
    return x


def _photometric(x, aug: Augmentation):
    """Stain and camera variation: brightness, contrast, saturation and hue, per image."""
    import tensorflow as tf

    n = tf.shape(x)[0]
    if aug.hue or aug.saturation:
        hsv = tf.image.rgb_to_hsv(x)
        h, s, v = tf.unstack(hsv, axis=-1)
        h = tf.math.floormod(h + _uniform(n, aug.hue)[..., 0], 1.0)
        s = tf.clip_by_value(s * _uniform(n, aug.saturation, 1.0)[..., 0], 0.0, 1.0)
        x = tf.image.hsv_to_rgb(tf.stack([h, s, v], axis=-1))
    if aug.contrast:
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        x = (x - mean) * _uniform(n, aug.contrast, 1.0) + mean
    if aug.brightness:
        x = x + _uniform(n, aug.brightness)
    return tf.clip_by_value(x, 0.0, 1.0)


def augment_batch(x, aug: Augmentation):
    """Augment a float batch (N, H, W, 3) in [0, 1]."""
    return _photometric(_geometric(x, aug), aug)


def to_float(x_uint8):
    """The tf twin of classifier.preprocess.to_input: uint8 -> float32 / 255."""
    import tensorflow as tf

    return tf.cast(x_uint8, tf.float32) / 255.0


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    training: bool,
    seed: int = 0,
    augmentation: Augmentation | None = None,
):
    """A tf.data.Dataset of (float images, float labels) batches.

    Training: reshuffled every epoch (seeded), augmented, last partial batch kept. Evaluation:
    in order, unaugmented. Both prefetch.
    """
    import tensorflow as tf

    images_t = tf.constant(images)
    labels_t = tf.constant(np.asarray(labels, np.float32).reshape(-1, 1))
    ds = tf.data.Dataset.range(len(images))
    if training:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    aug = augmentation or Augmentation()

    def gather(idx):
        x = to_float(tf.gather(images_t, idx))
        if training:
            x = augment_batch(x, aug)
        return x, tf.gather(labels_t, idx)

    return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def image_batches(images: np.ndarray, batch_size: int):
    """Unlabelled, unaugmented float batches in order (for prediction)."""
    import tensorflow as tf

    images_t = tf.constant(images)
    ds = tf.data.Dataset.range(len(images)).batch(batch_size)
    ds = ds.map(lambda idx: to_float(tf.gather(images_t, idx)), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def logits_and_features(model, images: np.ndarray, batch_size: int = 64):
    """The pre-sigmoid logits (n,) and penultimate features (n, 128) in one pass.

    The logit is the final layer's input times its kernel plus its bias (float64), exact rather
    than inverted from a rounded probability.
    """
    import keras

    from classifier.engine import FEATURE_LAYER, OUTPUT_LAYER

    head = model.get_layer(OUTPUT_LAYER)
    extractor = keras.Model(model.inputs, [model.get_layer(FEATURE_LAYER).output, head.input])
    kernel, bias = (np.asarray(w, np.float64) for w in head.get_weights())
    logits, features = [np.zeros(0)], [np.zeros((0, kernel.shape[0]), np.float32)]
    for batch in image_batches(images, batch_size):
        feats, penultimate = extractor(batch, training=False)
        logits.append(np.asarray(penultimate, np.float64) @ kernel[:, 0] + bias[0])
        features.append(np.asarray(feats, np.float32))
    return np.concatenate(logits), np.concatenate(features)


def predict_logits(model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The network's pre-sigmoid outputs (exact, not inverted from rounded probabilities)."""
    return logits_and_features(model, images, batch_size)[0]
