"""Helpers shared by the web-layer tests: generated PNGs, a broker-free upload recorder, predictions."""

import io
import zipfile

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from cases.models import Image, Prediction
from classifier.models import ModelVersion
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
    return ModelVersion.objects.create(
        name=name, file="models/dummy.keras", sha256="0" * 64, threshold=threshold
    )


def predict(
    image: Image,
    version: ModelVersion,
    probability: float,
    *,
    quality_ok: bool = True,
    quality_flags: list[str] | None = None,
    heatmaps: bool = True,
) -> Prediction:
    """A finished analysis written directly, as the worker would, with small heatmap files."""
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
        prediction.heatmap = default_storage.save(
            f"heatmaps/{image.pk}-overlay.png", ContentFile(cell_png(999))
        )
        prediction.heatmap_raw = default_storage.save(
            f"heatmaps/{image.pk}-raw.png", ContentFile(cell_png(998))
        )
    prediction.save()
    Image.objects.filter(pk=image.pk).update(status=Image.Status.DONE)
    return prediction
