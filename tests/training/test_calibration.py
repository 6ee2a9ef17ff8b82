"""Training calibrates, and evaluation measures, with the very function the engine serves with:
a probability computed one way in training and another in serving would be a train/serve skew."""

import numpy as np
import pytest

from classifier import calibration as serving
from classifier.engine import Engine
from classifier.preprocess import resize_rgb
from classifier.synthetic import make_cell
from training import calibration, evaluate, finalize
from training.pipeline import predict_logits


def test_training_has_no_probability_rule_of_its_own():
    assert not hasattr(calibration, "sigmoid") and not hasattr(calibration, "calibrate")
    assert finalize.calibrate is serving.calibrate
    assert evaluate.calibrate is serving.calibrate


def test_the_calibrated_probability_of_training_is_the_one_the_engine_serves(tiny_model_path):
    import keras

    model = keras.saving.load_model(tiny_model_path, compile=False)
    rng = np.random.default_rng(5)
    cells = [resize_rgb(make_cell(rng, i % 2 == 0, size=96 + 5 * i)) for i in range(8)]
    temperature = 1.7
    served = Engine(model, temperature=temperature).analyse(cells)

    logits = predict_logits(model, np.stack(cells))  # what finalize and evaluate calibrate
    assert logits == pytest.approx([r.logit for r in served], abs=1e-4)
    trained = serving.calibrate(logits, temperature)
    assert trained == pytest.approx([r.probability for r in served], abs=1e-5)
