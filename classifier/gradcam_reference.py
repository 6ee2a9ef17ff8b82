"""The naive Grad-CAM reference: one image, one predict, one GradientTape (slow on purpose).

Used by the tests (the batched engine must agree with it) and by bench/engine.py (the baseline it
is timed against). Same target as the engine: the logit of the output unit.
"""

from typing import Any

import numpy as np

from classifier.engine import OUTPUT_LAYER, gradcam_submodel


def naive_gradcam(model: Any, x_one: np.ndarray, submodel: Any | None = None) -> np.ndarray:
    """Grad-CAM (h, w) in [0, 1] for one preprocessed input (150, 150, 3), eager mode."""
    import tensorflow as tf

    submodel = submodel or gradcam_submodel(model)
    layer = model.get_layer(OUTPUT_LAYER)
    x = tf.convert_to_tensor(x_one[None].astype(np.float32))
    with tf.GradientTape() as tape:
        conv, _features, penultimate = submodel(x, training=False)
        logit = tf.matmul(penultimate, layer.kernel) + layer.bias
        score = logit[0, 0]
    grads = tape.gradient(score, conv)[0]
    conv = conv[0]
    alpha = tf.reduce_mean(grads, axis=(0, 1))
    cam = tf.nn.relu(tf.reduce_sum(conv * alpha, axis=-1)).numpy()
    peak = cam.max()
    return cam / peak if peak > 1e-12 else np.zeros_like(cam)


def naive_analyse(
    model: Any, x_one: np.ndarray, submodel: Any | None = None
) -> tuple[float, np.ndarray]:
    """The naive per-image path: model.predict for the probability, then a separate Grad-CAM."""
    probability = float(model.predict(x_one[None], verbose=0)[0, 0])
    return probability, naive_gradcam(model, x_one, submodel)
