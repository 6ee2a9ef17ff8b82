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
from training.evaluate import EvaluationData, load_evaluation_data, load_verified_model
from training.pipeline import logits_and_features

PER_GROUP = 60  # cells per group: the descriptor is a median, and a patient holds ~150 cells
SOURCE_NAMES = {"nih": "nih", "smear": "smear"}


def group_measurements(
    model, images: np.ndarray, groups: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{group: (features (n, 128), colours (n, 6))} of 150x150 uint8 cells."""
    return _measure(model, images, groups)[0]


def _measure(model, images: np.ndarray, groups: np.ndarray):
    """group_measurements, and the cells' logits beside them."""
    logits, features = logits_and_features(model, images)
    colours = domain.cell_colours(images)
    names = sorted(set(groups.tolist()))
    return {g: (features[groups == g], colours[groups == g]) for g in names}, logits


def folder_failures(
    cells: EvaluationData, logits: np.ndarray, version: ModelVersion, acceptance: dict
) -> list[str]:
    """Why the version's figures on a folder's cells miss the acceptance criteria ([] = none)."""
    from classifier.calibration import calibrate
    from training.sources import acceptance_failures, per_source

    source = "smear" if cells.layout == "smear" else "nih"
    origins = np.full(len(cells.labels), source)
    rows = per_source(
        origins,
        cells.stages,
        cells.groups,
        cells.labels,
        calibrate(logits, version.temperature),
        version.threshold,
    )
    return acceptance_failures(rows[source], acceptance)


def reference_from_folders(
    model,
    folders: Sequence[str | Path],
    split: str = "all",
    per_group: int = PER_GROUP,
    seed: int = 0,
    flag_rate: float = domain.FLAG_RATE,
    version: ModelVersion | None = None,
    acceptance: dict | None = None,
) -> dict:
    """A domain reference from NIH and/or smear folders (group names prefixed by the folder's
    layout when several folders are given, so that equal names never merge).

    With a version, each folder must first pass the acceptance criteria (the version's own
    threshold on the sampled cells); one that does not stays out and is recorded in
    ``not_validated``, and a ValueError says why when no folder is left.
    """
    from training.sources import ACCEPTANCE

    measured, sources, excluded = {}, {}, {}
    for folder in folders:
        cells = load_evaluation_data(folder, split, per_group=per_group, seed=seed)
        prefix = f"{cells.layout}:" if len(folders) > 1 else ""
        per_group_cells, logits = _measure(model, cells.images, cells.groups)
        if version is not None:
            reasons = folder_failures(cells, logits, version, acceptance or ACCEPTANCE)
            if reasons:
                excluded[str(folder)] = reasons
                continue
        for group, pair in per_group_cells.items():
            measured[prefix + group] = pair
            sources[prefix + group] = SOURCE_NAMES[cells.layout]
    if not measured:
        raise ValueError(
            "the version does not hold on any of these folders, so none can define its domain: "
            + "; ".join(f"{folder}: {', '.join(why)}" for folder, why in excluded.items())
        )
    reference = domain.build_reference(measured, sources, flag_rate=flag_rate)
    reference["not_validated"] = excluded
    return reference


def reference_from_run(
    model,
    images: np.ndarray,
    groups: np.ndarray,
    seed: int,
    per_group: int = PER_GROUP,
    origins: np.ndarray | None = None,
    exclude: dict[str, list[str]] | None = None,
) -> dict:
    """A domain reference from a training run's decoded cells and their groups: training and
    validation groups alike, of every source (origins: "nih", "smear", "reviewed") but those in
    exclude ({source: why}), which the reference records as not validated."""
    if origins is None:
        origins = np.array(
            ["nih" if g[:1] == "C" and g[1:2].isdigit() else "other" for g in groups]
        )
    source_of = dict(zip(groups.tolist(), np.asarray(origins).tolist(), strict=True))
    exclude = exclude or {}
    nothing_validated = bool(exclude) and set(exclude) >= set(source_of.values())
    # Validated on nothing: built from every group, and refusing each (classifier.domain).
    exclude_groups = {} if nothing_validated else exclude
    rng = np.random.default_rng(seed)
    keep = []
    for group in sorted(g for g in set(groups.tolist()) if source_of[g] not in exclude_groups):
        members = np.flatnonzero(groups == group)
        keep.append(rng.choice(members, min(per_group, len(members)), replace=False))
    keep = np.sort(np.concatenate(keep))
    measured = group_measurements(model, images[keep], groups[keep])
    reference = domain.build_reference(measured, {g: source_of[g] for g in measured})
    reference["not_validated"] = {source: list(why) for source, why in sorted(exclude.items())}
    if nothing_validated:
        reference["validated"] = False
    return reference


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
    acceptance: dict | None = None,
) -> dict:
    """Compute (hash-checked model) and store the version's domain reference; returns it.

    acceptance None: the default criteria (training.sources.ACCEPTANCE); {} accepts every folder
    (``--include-unvalidated``)."""
    model = load_verified_model(version)
    reference = reference_from_folders(
        model,
        folders,
        split,
        per_group,
        seed,
        version=version if acceptance != {} else None,
        acceptance=acceptance,
    )
    domain_reference_store(version=version, reference=reference)
    return reference
