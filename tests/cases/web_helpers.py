"""Helpers shared by the web-layer tests: generated PNGs, a broker-free upload recorder, predictions."""

import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cases.models import Image, Prediction
from cases.storage import file_store
from classifier.models import ModelVersion
from classifier.registry import register_version
from classifier.synthetic import make_cell, png_bytes


def cell_png(seed: int, parasitized: bool = False, size: int = 48) -> bytes:
    return png_bytes(make_cell(np.random.default_rng(seed), parasitized, size))


def zip_of(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def enqueued(monkeypatch) -> list[list[int]]:
    """Record the image ids the upload would send to the workers (no broker needed)."""
    calls: list[list[int]] = []
    monkeypatch.setattr(
        "cases.analysis.queue.analysis_enqueue", lambda ids: calls.append(list(ids))
    )
    return calls


def model_version(name: str = "test-v1", threshold: float = 0.5) -> ModelVersion:
    """A version registered by the registry's own writer (classifier.registry.register_version:
    stored under models/, its SHA-256 recorded), inactive, whose file is a small placeholder that
    is never loaded: enough for results and reports that name a version. A version of that name
    that already exists is returned as it is."""
    existing = ModelVersion.objects.filter(name=name).first()
    if existing is not None:
        return existing
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "placeholder.keras"
        path.write_bytes(b"a placeholder model file for tests: never loaded")
        return register_version(name=name, model_path=path, threshold=threshold)


def predict(
    image: Image,
    version: ModelVersion,
    probability: float,
    *,
    quality_ok: bool = True,
    quality_flags: list[str] | None = None,
    heatmaps: bool = True,
) -> Prediction:
    """A finished analysis written directly, as the worker's cases.analysis.services leaves it
    (running the network would make every test that needs a result slow): the same fields,
    the image DONE, and small heatmap files at the paths their upload_to builds."""
    label = "parasitized" if probability >= version.threshold else "uninfected"
    prediction = Prediction(
        image=image,
        model_version=version,
        probability=probability,
        label=label,
        threshold=version.threshold,
        quality_ok=quality_ok,
        quality_flags=quality_flags or [],
    )
    if heatmaps:
        prediction.heatmap = file_store(prediction, "heatmap", "overlay.png", cell_png(999))
        prediction.heatmap_raw = file_store(prediction, "heatmap_raw", "raw.png", cell_png(998))
    prediction.save()
    Image.objects.filter(pk=image.pk).update(status=Image.Status.DONE)
    return prediction
