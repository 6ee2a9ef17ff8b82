"""The quality gate flags images that are not usable stained cells and passes real ones."""

import json
import random

import cv2
import numpy as np
import pytest

from classifier.preprocess import decode_image
from classifier.quality import (
    FLAG_BLANK,
    FLAG_BLURRED,
    FLAG_COLOURS,
    FLAG_OVEREXPOSED,
    FLAG_TEXTURE,
    FLAG_UNDEREXPOSED,
    FLAG_UNFAMILIAR,
    assess,
    build_reference,
)
from classifier.synthetic import make_cell
from classifier.testing import synthetic_batch


def landscape(rng: np.random.Generator, size: int = 120) -> np.ndarray:
    """Blue sky over green fields: a smooth, photo-like gradient."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    img = np.stack([40 + 60 * yy, 90 + 100 * (1 - yy) + 30 * xx, 240 * (1 - yy) + 40], axis=-1)
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def colourful_texture(rng: np.random.Generator, size: int = 120) -> np.ndarray:
    coarse = cv2.resize(rng.normal(0, 1, (15, 15, 3)), (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(128 + 60 * (coarse + 0.3 * rng.normal(0, 1, coarse.shape)), 0, 255).astype(
        np.uint8
    )


NON_CELLS = {
    "uniform gray": (lambda rng: np.full((120, 120, 3), 128, np.uint8), FLAG_BLANK),
    "saturated white": (lambda rng: np.full((120, 120, 3), 255, np.uint8), FLAG_OVEREXPOSED),
    "black": (lambda rng: np.zeros((120, 120, 3), np.uint8), FLAG_BLANK),
    "dark frame": (
        lambda rng: np.clip(rng.normal(35, 10, (120, 120, 3)), 0, 255).astype(np.uint8),
        FLAG_UNDEREXPOSED,
    ),
    "pure noise": (lambda rng: rng.integers(0, 256, (120, 120, 3), dtype=np.uint8), FLAG_TEXTURE),
    "colourful texture": (colourful_texture, FLAG_COLOURS),
    "blurred cell": (lambda rng: cv2.GaussianBlur(make_cell(rng, True), (0, 0), 6), FLAG_BLURRED),
    "landscape": (landscape, FLAG_COLOURS),
}


@pytest.mark.parametrize("name", list(NON_CELLS))
def test_it_flags_images_that_are_not_usable_cells(name, rng):
    make, expected_flag = NON_CELLS[name]
    result = assess(make(rng), None, {})
    assert not result.ok
    assert expected_flag in result.flags, result


def test_it_passes_synthetic_cells(rng):
    results = [assess(make_cell(rng, i % 2 == 0, 80 + i), None, None) for i in range(60)]
    assert all(r.ok for r in results), [r.flags for r in results if not r.ok]


def test_it_passes_real_nih_cells_with_their_black_padding(nih_cells):
    files = sorted(nih_cells.glob("*/*.png"))
    sample = random.Random(0).sample(files, 300)
    results = [assess(decode_image(f.read_bytes()), None, None) for f in sample]
    pass_rate = np.mean([r.ok for r in results])
    assert pass_rate >= 0.98, pass_rate


def test_the_reference_is_json_and_flags_unfamiliar_features(tiny_engine):
    x, _ = synthetic_batch(48, seed=11)
    reference = json.loads(json.dumps(build_reference(tiny_engine, x)))
    assert len(reference["features"]["mean"]) == 128
    held_out, _ = synthetic_batch(24, seed=12)
    features = tiny_engine.features(held_out)
    rgb = (held_out * 255 + 0.5).astype(np.uint8)
    passed = [assess(img, f, reference).ok for img, f in zip(rgb, features, strict=True)]
    assert np.mean(passed) >= 0.95
    odd = features[0] + 50 * np.asarray(reference["features"]["std"])
    result = assess(rgb[0], odd, reference)
    assert result.flags == [FLAG_UNFAMILIAR]
    assert result.metrics["feature_distance"] > result.metrics["feature_distance_limit"]


def test_build_reference_accepts_a_keras_model(tiny_model):
    x, _ = synthetic_batch(8, seed=13)
    reference = build_reference(tiny_model, x)
    assert reference["n"] == 8 and reference["features"]["distance_p995"] > 0


def test_the_feature_distance_is_to_the_nearer_class():
    from classifier.quality import feature_distance

    def stats(mean, std, p995):
        return {"mean": [mean] * 4, "std": [std] * 4, "distance_p995": p995}

    pooled = stats(0.0, 1.0, 2.0)
    reference = {"features": {**pooled, "by_class": {"0": stats(0.0, 1.0, 2.0),
                                                     "1": stats(10.0, 1.0, 2.0)}}}  # fmt: skip
    strongly_parasitized = np.full(4, 10.5)
    assert feature_distance(strongly_parasitized, {"features": pooled}) > 3.0  # pooled: flagged
    assert feature_distance(strongly_parasitized, reference) == pytest.approx(0.5)
    assert feature_distance(np.full(4, 30.0), reference) > 3.0  # unlike either class


def test_build_reference_keeps_statistics_per_class(tiny_engine):
    from classifier.testing import synthetic_batch

    x, y = synthetic_batch(48, seed=3)
    reference = build_reference(tiny_engine, x, y)
    assert set(reference["features"]["by_class"]) == {"0", "1"}
    assert reference["features"]["by_class"]["1"]["n"] == 24


def test_bluish_giemsa_cells_are_stained_colours():
    from classifier.quality import image_metrics

    cell = np.zeros((150, 150, 3), np.uint8)
    cell[30:120, 30:120] = (
        140,
        160,
        215,
    )  # a lilac-blue cell (hue 112), as on some NIH patients' smears
    assert image_metrics(cell)["stain_fraction"] > 0.9
