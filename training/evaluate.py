"""Evaluate a registered model version on an NIH-layout folder or an annotated smear folder.

An NIH folder (Parasitized/, Uninfected/) is grouped by patient; a smear folder in the IML layout
(annotations.json + images/) gives one cell per annotated box, cut with classifier.cells.cut_cell
(the crop the field path uses at serving time), grouped by field: 'red blood cell' is uninfected,
the parasite stages parasitized, 'difficult' boxes and cells cut by the image's edge (never
classified at serving time) are left out, and the sensitivity is also given per stage.
``split`` evaluates only the held-out groups (or only the training ones) of the split training
uses. The domain guard (classifier.domain) judges every group: ``out_of_domain_fraction``.

The version's file is checked against its SHA-256 before it is loaded; probabilities are
calibrated with the version's temperature and called at its stored threshold. Metrics come with
95% intervals from a bootstrap over patients; ROC, confusion-matrix and reliability plots and a
metrics.json go to var/evaluations/<version>/<timestamp>/, and a summary is appended to the
version's ``metrics["evaluations"]``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage

from classifier import domain
from classifier.architecture import INPUT_SIZE
from classifier.calibration import calibrate
from classifier.cells import CellBox, clip_box, cut_cell
from classifier.models import ModelVersion
from classifier.preprocess import resize_rgb
from classifier.registry import active_version, local_model_file
from training import calibration, plots
from training.data import Example, decode_all, list_folder, split_by_group
from training.metrics import sensitivity_at_specificity, summarize
from training.pipeline import logits_and_features
from training.smears import (
    PARASITE_STAGES,
    UNINFECTED_TYPES,
    AnnotatedField,
    is_smear_folder,
    load_fields,
    split_fields,
)
from training.sources import (
    ACCEPTANCE,
    FIELD_SOURCES,
    acceptance_failures,
    field_parasitemia_error,
    stage_sensitivity,
)

SPLITS = ("all", "training", "validation")
# The splits the shipped models were trained with: NIH by patient (train_model's defaults),
# smear folders by field (training.smears.split_fields).
NIH_VAL_FRACTION, NIH_SPLIT_SEED, SMEAR_VAL_FRACTION = 0.2, 42, 0.15

GROUP_UNITS = {"nih": "patient", "smear": "field", "reviewed": "case"}
SUMMARY_KEYS = (
    "n",
    "accuracy",
    "auc",
    "sensitivity",
    "specificity",
    "precision",
    "f1",
    "threshold",
)


class EvaluationError(Exception):
    """The evaluation cannot run (no such version, no active version)."""


def resolve_version(name: str | None) -> ModelVersion:
    """The named version, or the active one when no name is given."""
    if name:
        version = ModelVersion.objects.filter(name=name).first()
        if version is None:
            raise EvaluationError(f"no model version named {name!r}")
        return version
    version = active_version()
    if version is None:
        raise EvaluationError("no model version is active; pass --version")
    return version


def load_verified_model(version: ModelVersion):
    """Load the version's Keras model after its SHA-256 check (ModelFileError if it fails)."""
    import keras

    with local_model_file(version) as path:
        return keras.models.load_model(path, compile=False)


@dataclass
class EvaluationData:
    """Cells of one folder at 150x150: label (1 parasitized), group, and stage ('' for NIH)."""

    layout: str  # "nih" | "smear"
    images: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    stages: np.ndarray


def load_evaluation_data(
    data: str | Path,
    split: str = "all",
    val_fraction: float | None = None,
    per_group: int | None = None,
    seed: int = 0,
) -> EvaluationData:
    """The cells of an NIH or smear folder, restricted to one side of the training split.

    per_group: at most this many cells of each group, drawn at random (seeded), for statistics
    that need a sample rather than every cell (the domain reference).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}")
    if is_smear_folder(data):
        fields = load_fields(data)
        if split != "all":
            training, validation = split_fields(fields, val_fraction or SMEAR_VAL_FRACTION)
            fields = validation if split == "validation" else training
        return sample_groups(smear_cells(fields), per_group, seed)
    examples = list_folder(data)
    if split != "all":
        train_idx, val_idx = split_by_group(
            [e.group for e in examples],
            [e.label for e in examples],
            val_fraction or NIH_VAL_FRACTION,
            NIH_SPLIT_SEED,
        )
        examples = [examples[i] for i in (val_idx if split == "validation" else train_idx)]
    if per_group:
        keep = _sample_indices(np.array([e.group for e in examples]), per_group, seed)
        examples = [examples[i] for i in keep]
    return decoded("nih", examples)


def decoded(layout: str, examples: list[Example]) -> EvaluationData:
    """Decode examples (classifier.preprocess) into an EvaluationData without stages."""
    return EvaluationData(
        layout,
        decode_all(examples),
        np.array([e.label for e in examples]),
        np.array([e.group for e in examples]),
        np.full(len(examples), "", dtype=object),
    )


def reviewed_cells(site: str | None = None) -> EvaluationData:
    """Every reviewer-labelled cell (of one site when given), the reviewer's label as the truth,
    grouped by case: how a version does on a site's own, reviewed cells."""
    from training.reviewed import reviewed_examples

    rows = reviewed_examples(site)
    if not rows:
        where = f"site {site!r}" if site else "this installation"
        raise FileNotFoundError(f"no reviewed cells in {where}")
    examples = [Example(data, label, group, origin="reviewed") for data, label, group in rows]
    return decoded("reviewed", examples)


def _sample_indices(groups: np.ndarray, per_group: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    chosen = []
    for group in sorted(set(groups.tolist())):
        members = np.flatnonzero(groups == group)
        chosen.append(rng.choice(members, min(per_group, len(members)), replace=False))
    return np.sort(np.concatenate(chosen))


def sample_groups(cells: EvaluationData, per_group: int | None, seed: int) -> EvaluationData:
    if not per_group:
        return cells
    keep = _sample_indices(cells.groups, per_group, seed)
    return EvaluationData(
        cells.layout, cells.images[keep], cells.labels[keep], cells.groups[keep], cells.stages[keep]
    )


def smear_cells(fields: list[AnnotatedField]) -> EvaluationData:
    """One 150x150 crop per classifiable box (see the module docstring), grouped by field."""
    images, labels, groups, stages = [], [], [], []
    for field in fields:
        rgb = field.read()
        height, width = rgb.shape[:2]
        inside = field.counted(width, height)
        for box, kind, keep in zip(field.boxes, field.types, inside, strict=True):
            if not keep or kind not in PARASITE_STAGES | UNINFECTED_TYPES:
                continue
            cell = cut_cell(rgb, CellBox(*clip_box(*box, width, height)))
            images.append(resize_rgb(cell, INPUT_SIZE))
            labels.append(int(kind in PARASITE_STAGES))
            groups.append(field.name)
            stages.append(kind if kind in PARASITE_STAGES else "")
    if not images:
        raise FileNotFoundError("the smear folder holds no classifiable annotated cells")
    return EvaluationData(
        "smear",
        np.stack(images),
        np.array(labels),
        np.array(groups),
        np.array(stages, dtype=object),
    )


def domain_flags(
    groups: np.ndarray, features: np.ndarray, colours: np.ndarray, reference: dict | None
) -> dict:
    """The guard's decision on every group, and the share of judged groups it flags."""
    decisions = {}
    for group in sorted(set(groups.tolist())):
        mask = groups == group
        decisions[group] = domain.check_group(features[mask], colours[mask], reference)
    judged = [d for d in decisions.values() if d.status != domain.UNDETERMINED]
    flagged = sorted(g for g, d in decisions.items() if d.flagged)
    return {
        "out_of_domain_fraction": len(flagged) / len(judged) if judged else None,
        "domain": {
            "groups_judged": len(judged),
            "groups_flagged": flagged,
            "limit": reference.get("limit") if reference else None,
            "scores": {g: d.score for g, d in decisions.items()},
        },
    }


def evaluate_version(
    version: ModelVersion,
    data: str | Path,
    reps: int = 1000,
    seed: int = 0,
    output_root: Path | None = None,
    split: str = "all",
    val_fraction: float | None = None,
    reviewed_site: str | None = None,
) -> dict:
    """Evaluate, write plots and metrics.json, record the summary on the version; returns all.

    data=None evaluates on reviewed cells instead (of reviewed_site when given)."""
    if data is None:
        cells = reviewed_cells(reviewed_site)
    else:
        cells = load_evaluation_data(data, split, val_fraction)
    labels, groups = cells.labels, cells.groups
    logits, features = logits_and_features(load_verified_model(version), cells.images)
    probabilities = calibrate(logits, version.temperature)
    result = summarize(labels, probabilities, groups, version.threshold, reps, seed)
    result.update(layout=cells.layout, split=split, group_unit=GROUP_UNITS[cells.layout])
    if cells.layout == "smear":
        result["stage_sensitivity"] = stage_sensitivity(
            cells.stages, probabilities, version.threshold
        )
    if cells.layout in FIELD_SOURCES:
        result["parasitemia"] = field_parasitemia_error(
            groups, labels, probabilities, version.threshold
        )
    result["sensitivity_at_specificity"] = sensitivity_at_specificity(labels, probabilities)
    result["acceptance"] = {"criteria": ACCEPTANCE, "failures": acceptance_failures(result)}
    reference = (version.quality_reference or {}).get("domain")
    result.update(domain_flags(groups, features, domain.cell_colours(cells.images), reference))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    root = output_root or Path(settings.VAR_DIR) / "evaluations"
    folder = root / version.name / stamp
    result.update(
        version=version.name,
        temperature=version.temperature,
        data=str(Path(data).resolve())
        if data is not None
        else f"reviewed cells of {f'site {reviewed_site}' if reviewed_site else 'every site'}",
        evaluated_at=stamp,
        folder=str(folder),
        plots=plots.write_all(folder, labels, probabilities, version.threshold),
        reliability=calibration.reliability_bins(probabilities, labels),
    )
    result = strict_json(result)
    (folder / "metrics.json").write_text(json.dumps(result, indent=2))
    record_evaluation(version, result)
    return result


def record_evaluation(version: ModelVersion, result: dict) -> None:
    """Append a summary (metrics, intervals, paths) to the version's metrics JSON."""
    summary = {key: result[key] for key in (*SUMMARY_KEYS, "confusion_matrix", "ci95")}
    summary.update(
        {
            k: result[k]
            for k in (
                "layout",
                "split",
                "stage_sensitivity",
                "parasitemia",
                "sensitivity_at_specificity",
                "acceptance",
                "out_of_domain_fraction",
            )
            if k in result
        }
    )
    summary.update({k: result[k] for k in ("data", "evaluated_at", "folder", "plots")})
    summary["stored_plots"] = store_plots(version, result["evaluated_at"], result["plots"])
    metrics = dict(version.metrics or {})
    metrics["evaluations"] = [*metrics.get("evaluations", []), summary]
    version.metrics = metrics
    version.save(update_fields=["metrics"])


def store_plots(version: ModelVersion, stamp: str, plot_paths: dict[str, str]) -> dict[str, str]:
    """Copy the plots into the shared storage, where the admin pages of every machine find them."""
    stored = {}
    for kind, path in plot_paths.items():
        with open(path, "rb") as handle:
            name = f"models/{version.name}/evaluations/{stamp}/{kind}.png"
            stored[kind] = default_storage.save(name, File(handle))
    return stored


def strict_json(value):
    """NaN and infinities -> None, numpy scalars -> Python numbers (valid JSON everywhere)."""
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_report(result: dict) -> list[str]:
    """Human-readable lines: each metric with its 95% interval, and the confusion matrix."""
    ci = result.get("ci95", {})
    lines = [
        f"version {result['version']} on {result['data']}: {result['n']} images, "
        f"{result['n_groups']} {result.get('group_unit', 'patient')}s; threshold {result['threshold']:.4f}, "
        f"temperature {result['temperature']:.4f}"
    ]
    for key in ("accuracy", "auc", "sensitivity", "specificity", "precision", "npv", "f1"):
        value, interval = result.get(key), ci.get(key)
        shown = "n/a" if value is None else f"{value:.4f}"
        if interval:
            shown += f"  (95% CI {interval[0]:.4f}-{interval[1]:.4f})"
        lines.append(f"  {key:<12} {shown}")
    for stage, row in (result.get("stage_sensitivity") or {}).items():
        shown = "n/a" if row["sensitivity"] is None else f"{row['sensitivity']:.4f}"
        lines.append(f"  {stage:<12} sensitivity {shown} ({row['n']} cells)")
    lines.extend(_field_lines(result))
    ood = result.get("out_of_domain_fraction")
    if ood is None:
        lines.append("  domain guard not judged (no domain reference stored with the version)")
    else:
        judged = result["domain"]["groups_judged"]
        lines.append(
            f"  out of domain {ood:.4f} of {judged} {result.get('group_unit', 'group')}s judged"
        )
    cm = result["confusion_matrix"]
    lines.append(f"  confusion    TP {cm['tp']}  FN {cm['fn']}  FP {cm['fp']}  TN {cm['tn']}")
    lines.append(f"  plots and metrics.json in {result['folder']}")
    return lines


def _field_lines(result: dict) -> list[str]:
    """Parasitemia error, sensitivity at fixed specificities and the acceptance verdict."""
    lines = []
    parasitemia = result.get("parasitemia")
    if parasitemia and parasitemia["mae_pct_points"] is not None:
        lines.append(
            f"  parasitemia  error {parasitemia['mae_pct_points']:.2f} points per "
            f"{result.get('group_unit', 'group')} on average (largest "
            f"{parasitemia['max_pct_points']:.2f})"
        )
    for specificity, row in (result.get("sensitivity_at_specificity") or {}).items():
        if row:
            lines.append(
                f"  at specificity {specificity}: sensitivity {row['sensitivity']:.4f} "
                f"(threshold {row['threshold']:.4f})"
            )
    failures = (result.get("acceptance") or {}).get("failures")
    lines.append(
        "  acceptance   met" if not failures else f"  acceptance   missed: {'; '.join(failures)}"
    )
    return lines
