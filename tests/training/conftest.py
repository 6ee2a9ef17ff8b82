"""Fixtures of the training tests: small synthetic NIH-layout folders (no real data needed)."""

from pathlib import Path

import pytest

from classifier.synthetic import write_nih_folder


@pytest.fixture(scope="session")
def nih_folder(tmp_path_factory) -> Path:
    """40 images per class from 8 patients (C100..C107), 64 px crops: trains in seconds."""
    return write_nih_folder(tmp_path_factory.mktemp("nih"), 40, n_patients=8, size=64, seed=1)


@pytest.fixture
def var_dir(settings, tmp_path) -> Path:
    """VAR_DIR (run folders, evaluations) inside the test's temporary folder."""
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()
    return settings.VAR_DIR


@pytest.fixture(scope="session")
def smear_folder(tmp_path_factory) -> Path:
    """Six synthetic field photographs in the IML layout, two parasitized cells each."""
    from classifier.synthetic import write_smear_folder

    return write_smear_folder(tmp_path_factory.mktemp("smears"), 6, seed=2)
