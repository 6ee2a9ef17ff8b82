"""The domain guard's reference for a model version (classifier.domain), stored in the version's
``quality_reference["domain"]``.

Computed from the groups the version was trained and validated on — NIH patients, smear fields —
by train_model (finalize) and, for an existing version, by ``manage.py domain_reference``. Every
group's cells (a sample of them) go through the version's network for their penultimate features;
their colours are measured; classifier.domain.build_reference calibrates the limit so that at most
5% of these groups, each judged against the others, are flagged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from classifier import domain
from classifier.models import ModelVersion
from training.evaluate import load_evaluation_data, load_verified_model
from training.pipeline import logits_and_features

PER_GROUP = 60  # cells per group: the descriptor is a median, and a patient holds ~150 cells
SOURCE_NAMES = {"nih": "nih", "smear": "smear"}


def group_measurements(
    model, images: np.ndarray, groups: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{group: (features (n, 128), colours (n, 6))} of 150x150 uint8 cells."""
    _, features = logits_and_features(model, images)
    colours = domain.cell_colours(images)
    return {g: (features[groups == g], colours[groups == g]) for g in sorted(set(groups.tolist()))}


def reference_from_folders(
    model,
    folders: Sequence[str | Path],
    split: str = "all",
    per_group: int = PER_GROUP,
    seed: int = 0,
    flag_rate: float = domain.FLAG_RATE,
) -> dict:
    """A domain reference from NIH and/or smear folders (group names prefixed by the folder's
    layout when several folders are given, so that equal names never merge)."""
    measured, sources = {}, {}
    for folder in folders:
        cells = load_evaluation_data(folder, split, per_group=per_group, seed=seed)
        prefix = f"{cells.layout}:" if len(folders) > 1 else ""
        for group, pair in group_measurements(model, cells.images, cells.groups).items():
            measured[prefix + group] = pair
            sources[prefix + group] = SOURCE_NAMES[cells.layout]
    return domain.build_reference(measured, sources, flag_rate=flag_rate)


def reference_from_run(
    model, images: np.ndarray, groups: np.ndarray, seed: int, per_group: int = PER_GROUP
) -> dict:
    """A domain reference from a training run's decoded cells and their groups (all of them:
    training and validation patients alike are what the version was validated on)."""
    rng = np.random.default_rng(seed)
    keep = []
    for group in sorted(set(groups.tolist())):
        members = np.flatnonzero(groups == group)
        keep.append(rng.choice(members, min(per_group, len(members)), replace=False))
    keep = np.sort(np.concatenate(keep))
    measured = group_measurements(model, images[keep], groups[keep])
    sources = {g: "nih" if g[:1] == "C" and g[1:2].isdigit() else "other" for g in measured}
    return domain.build_reference(measured, sources)


def domain_reference_store(*, version: ModelVersion, reference: dict) -> ModelVersion:
    """Keep the reference in the version's quality_reference (beside the quality gate's)."""
    version.quality_reference = {**(version.quality_reference or {}), "domain": reference}
    version.save(update_fields=["quality_reference"])
    return version


def domain_reference_compute(
    *,
    version: ModelVersion,
    folders: Sequence[str | Path],
    split: str = "all",
    per_group: int = PER_GROUP,
    seed: int = 0,
) -> dict:
    """Compute (hash-checked model) and store the version's domain reference; returns it."""
    model = load_verified_model(version)
    reference = reference_from_folders(model, folders, split, per_group, seed)
    domain_reference_store(version=version, reference=reference)
    return reference
