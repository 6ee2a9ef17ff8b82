"""The batched engine agrees with the naive per-image path, calibrates, and fails closed."""

import numpy as np
import pytest

from classifier.calibration import calibrate
from classifier.engine import (
    LABEL_PARASITIZED,
    LABEL_UNGRADABLE,
    LABEL_UNINFECTED,
    Engine,
    ModelIntegrityError,
    upsample_heatmap,
)
from classifier.gradcam_reference import naive_gradcam
from classifier.hashing import sha256_of
from classifier.preprocess import resize_rgb, to_input
from classifier.synthetic import make_cell
from classifier.testing import synthetic_batch


@pytest.fixture(scope="module")
def cells() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [make_cell(rng, i % 2 == 0, size=90 + 7 * i) for i in range(10)]


def test_batched_probabilities_equal_model_predict(tiny_engine):
    x, _ = synthetic_batch(12, seed=3)
    out = tiny_engine.run_batch(x)
    expected = tiny_engine.model.predict(x, verbose=0)[:, 0]
    np.testing.assert_allclose(out["probability"], expected, atol=1e-5)


def test_batched_gradcam_equals_the_per_image_gradient_tape(tiny_engine):
    x, _ = synthetic_batch(12, seed=4)
    cams = tiny_engine.run_batch(x)["cam"]
    reference = np.stack([naive_gradcam(tiny_engine.model, xi) for xi in x])
    assert cams.shape == reference.shape == (12, 34, 34)
    assert np.abs(cams - reference).max() < 1e-4
    assert (cams.max(axis=(1, 2)) > 0.99).mean() > 0.5  # real maps, not all-zero ones


def test_analyse_returns_heatmaps_at_each_original_size(tiny_engine, cells):
    results = tiny_engine.analyse(cells)  # 10 images in batches of 8: two compiled calls
    assert len(results) == len(cells)
    for rgb, result in zip(cells, results, strict=True):
        assert result.heatmap.shape == rgb.shape[:2] and result.heatmap.dtype == np.float32
        assert 0.0 <= result.heatmap.min() and result.heatmap.max() <= 1.0
        assert result.features.shape == (128,)
        cam = naive_gradcam(tiny_engine.model, to_input(resize_rgb(rgb)))
        assert np.abs(result.heatmap - upsample_heatmap(cam, *rgb.shape[:2])).max() < 1e-4


def test_analyse_gives_each_image_the_same_result_alone_or_in_a_batch(tiny_engine, cells):
    together = tiny_engine.analyse(cells)
    alone = tiny_engine.analyse(cells[3:4])[0]
    assert alone.probability == pytest.approx(together[3].probability, abs=1e-6)
    assert np.abs(alone.heatmap - together[3].heatmap).max() < 1e-4


def test_the_compiled_step_is_traced_once_for_all_batch_sizes(tiny_model):
    engine = Engine(tiny_model, batch_size=4)
    for n in (1, 3, 4):
        engine.run_batch(synthetic_batch(n, seed=n)[0])
    assert engine._step.experimental_get_tracing_count() == 1


def test_temperature_scales_the_logit_and_the_threshold_sets_the_label(tiny_model, cells):
    engine = Engine(tiny_model, threshold=0.5, temperature=2.0)
    result = engine.analyse(cells[:1])[0]
    assert result.probability == pytest.approx(1 / (1 + np.exp(-result.logit / 2.0)), abs=1e-9)
    assert result.raw_probability == pytest.approx(1 / (1 + np.exp(-result.logit)), abs=1e-6)
    strict = Engine(tiny_model, threshold=min(result.probability + 1e-6, 1.0), temperature=2.0)
    lenient = Engine(tiny_model, threshold=result.probability, temperature=2.0)
    assert strict.analyse(cells[:1])[0].label == LABEL_UNINFECTED
    assert lenient.analyse(cells[:1])[0].label == LABEL_PARASITIZED


def test_calibrate_is_stable_for_extreme_logits():
    values = calibrate(np.array([-1000.0, 0.0, 1000.0]), 1.5)
    assert values.tolist() == [0.0, 0.5, 1.0]


def test_a_frame_failing_the_quality_gate_is_ungradable(tiny_engine):
    blank = np.full((120, 120, 3), 128, np.uint8)
    result = tiny_engine.analyse([blank])[0]
    assert result.label == LABEL_UNGRADABLE
    assert result.model_label in (LABEL_PARASITIZED, LABEL_UNINFECTED)
    assert "blank frame" in result.quality.flags


def test_load_checks_the_hash_and_loads_a_matching_file(tiny_model_path):
    engine = Engine.load(tiny_model_path, sha256_of(tiny_model_path), threshold=0.3)
    assert engine.threshold == 0.3
    assert engine.analyse([make_cell(np.random.default_rng(0), True)])[0].heatmap.shape == (
        120,
        120,
    )


def test_load_refuses_a_file_whose_hash_does_not_match_before_loading(tiny_model_path, monkeypatch):
    import keras

    def must_not_load(*args, **kwargs):
        raise AssertionError("the model was loaded despite a hash mismatch")

    monkeypatch.setattr(keras.saving, "load_model", must_not_load)
    wrong = "0" * 64
    with pytest.raises(ModelIntegrityError) as info:
        Engine.load(tiny_model_path, wrong)
    assert wrong in str(info.value) and sha256_of(tiny_model_path) in str(info.value)
