"""Test helpers shared by the whole suite: a tiny but real model trained on synthetic cells.

train_tiny_model() trains the production architecture (build_model) for a couple of epochs on
synthetic cells from classifier.synthetic, so that tests of the engine, the worker and the web
pages run against a genuine .keras file in seconds, without real data.
"""

import os
from pathlib import Path

import numpy as np

from classifier.preprocess import resize_rgb, to_input
from classifier.synthetic import make_cell


def synthetic_batch(n: int, seed: int = 0, size: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """n synthetic cells, half parasitized, as network inputs (n, 150, 150, 3) and labels (n,)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    x = np.stack([to_input(resize_rgb(make_cell(rng, bool(y), size))) for y in labels])
    return x, labels.astype(np.float32)


def train_tiny_model(path: str | os.PathLike, n: int = 96, epochs: int = 4, seed: int = 0) -> Path:
    """Train build_model() on n synthetic cells and save it as a .keras file at path.

    Reuses the file when it already exists (a session-scoped fixture calls this once per run; the
    result is a real, loadable model that separates synthetic classes (~90% accuracy with the
    defaults), not a good one). Fewer samples or epochs train faster but may predict a constant.
    Writes to a temporary name first so an interrupted run never leaves a half-written file.
    """
    from classifier.architecture import build_model

    path = Path(path)
    if path.exists():
        return path
    x, y = synthetic_batch(n, seed=seed)
    model = build_model(seed=seed)
    model.fit(x, y, batch_size=16, epochs=epochs, shuffle=True, verbose=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)
    return path
