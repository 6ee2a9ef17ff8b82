"""Fixtures for the classifier's pure unit tests: a tiny trained model and the real-data folder.

No database here. Django-side tests can reuse classifier.testing.train_tiny_model() directly.
"""

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """$MALARIA_DATA_DIR, or ../shared/data next to the repository."""
    return Path(os.environ.get("MALARIA_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def tiny_model(tiny_model_path: Path):
    import keras

    return keras.saving.load_model(tiny_model_path, compile=False)


@pytest.fixture(scope="session")
def tiny_engine(tiny_model):
    from classifier.engine import Engine

    return Engine(tiny_model, batch_size=8)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def nih_cells() -> Path:
    folder = data_dir() / "nih_cells"
    if not (folder / "Parasitized").is_dir():
        pytest.skip(f"real NIH cells not found at {folder} (set MALARIA_DATA_DIR)")
    return folder


@pytest.fixture(scope="session")
def smears() -> Path:
    folder = data_dir() / "smears"
    if not (folder / "annotations.json").is_file():
        pytest.skip(f"real smear photographs not found at {folder} (set MALARIA_DATA_DIR)")
    return folder
