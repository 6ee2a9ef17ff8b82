"""The shipped default model (classifier/default_model/): intact, calibrated, and honest on non-cells."""

import json
import random
from pathlib import Path

import cv2
import numpy as np
import pytest

from classifier.engine import LABEL_UNGRADABLE, Engine
from classifier.hashing import sha256_of
from classifier.preprocess import decode_image
from classifier.synthetic import make_cell

FOLDER = Path(__file__).resolve().parents[2] / "classifier" / "default_model"


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((FOLDER / "manifest.json").read_text())


@pytest.fixture(scope="module")
def engine(manifest) -> Engine:
    return Engine.load(
        FOLDER / manifest["file"],
        manifest["sha256"],
        manifest["threshold"],
        manifest["temperature"],
        manifest["quality_reference"],
    )


def test_the_shipped_file_matches_its_manifest_and_card(manifest):
    assert sha256_of(FOLDER / manifest["file"]) == manifest["sha256"]
    assert (FOLDER / manifest["file"]).stat().st_size < 30 * 1024 * 1024
    card = json.loads((FOLDER / "card.json").read_text())
    assert "decision support" in json.dumps(card).lower()
    assert 0.0 < manifest["threshold"] < 1.0 and manifest["temperature"] > 0
    assert manifest["quality_reference"]["features"]


def non_cells() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    ramp = np.linspace(60, 200, 120)[None, :].repeat(120, 0)
    return {
        "gray frame": np.full((120, 120, 3), 128, np.uint8),
        "saturated frame": np.full((120, 120, 3), 255, np.uint8),
        "noise": rng.integers(0, 255, (120, 120, 3), dtype=np.uint8),
        "green landscape": np.dstack(
            [np.full((120, 120), 40), ramp, np.full((120, 120), 90)]
        ).astype(np.uint8),
        "blurred cell": cv2.GaussianBlur(make_cell(rng, True, 120), (0, 0), 8),
    }


@pytest.mark.parametrize("name", list(non_cells()))
def test_the_shipped_model_gives_no_confident_label_to_a_non_cell(engine, name):
    result = engine.analyse([non_cells()[name]])[0]
    assert result.label == LABEL_UNGRADABLE and result.quality.flags


def test_the_shipped_model_on_real_cells(engine, nih_cells):
    # The validation patients' figures are in the card; this only guards against a broken export.
    files = random.Random(7).sample(sorted(nih_cells.glob("*/*.png")), 300)
    results = engine.analyse([decode_image(f.read_bytes()) for f in files])
    truth = [f.parent.name == "Parasitized" for f in files]
    called = [r.model_label == "parasitized" for r in results]
    assert np.mean(np.equal(truth, called)) > 0.9
    assert np.mean([not r.quality.ok for r in results]) < 0.03
