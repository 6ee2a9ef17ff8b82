"""Register a trained detector run as an (inactive) ModelVersion of kind 'detector', with its card."""

from __future__ import annotations

import platform
from dataclasses import asdict
from pathlib import Path

from classifier import detector as det
from classifier.models import ModelVersion
from classifier.registry import register_version
from training.detector import DetectorConfig


def detector_card(config: DetectorConfig, result: dict) -> dict:
    """What the version is, what it was trained and validated on, and how well it did."""
    validation = result.get("validation", {})
    return {
        "name": config.name,
        "kind": ModelVersion.Kind.DETECTOR,
        "intended_use": (
            "Find every red blood cell in a whole-field photograph of a Giemsa-stained thin "
            "smear, so each can be classified; cells cut by the image edge are flagged and "
            "not counted. Decision support for a microscopist, who can add or remove cells."
        ),
        "architecture": (
            f"fully convolutional centre/size network, output stride {det.STRIDE}; the field is "
            f"rescaled so a typical cell is {det.CELL_PX:.0f} px (cell size estimated from the "
            f"photograph); at most {det.MAX_CELLS} cells per field"
        ),
        "training_data": config.data,
        "hyperparameters": {k: v for k, v in asdict(config).items() if k not in ("data", "output")},
        "validation_fields": result.get("validation_fields", []),
        "threshold": result["threshold"],
        "validation": validation,
        "best_epoch": result.get("best_epoch"),
        "epochs_run": result.get("epochs_run"),
        "training_minutes": result.get("training_minutes"),
        "history": result.get("history", []),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
    }


def register_detector(config: DetectorConfig, result: dict) -> ModelVersion:
    """Register the run's model; the run's own options (config.json, as on --resume) go on the
    card, whatever the command was given."""
    if result.get("config"):
        config = DetectorConfig(**result["config"])
    card = detector_card(config, result)
    return register_version(
        name=config.name,
        kind=ModelVersion.Kind.DETECTOR,
        model_path=result["model"],
        threshold=result["threshold"],
        metrics={"validation": result.get("validation", {})},
        card=card,
        notes=f"Cell detector trained on {config.data}.",
    )


def detector_card_markdown(card: dict) -> str:
    """The detector's card as a page a lab can read."""
    v = card.get("validation", {})
    lines = [
        f"# Cell detector {card.get('name', '')}",
        "",
        card.get("intended_use", ""),
        "",
        f"- Architecture: {card.get('architecture', '')}",
        f"- Trained on: {card.get('training_data', '')}; best epoch {card.get('best_epoch')} of "
        f"{card.get('epochs_run')} ({card.get('training_minutes')} min on {card.get('machine', '')})",
        f"- Threshold (centre score, chosen on validation for the best F1 on cells inside the "
        f"image): {card.get('threshold')}",
        "",
        f"## Validation on {len(card.get('validation_fields', []))} held-out fields",
        "",
        "Every annotated box is a cell; a detection is right when its IoU with an annotated box is "
        "at least 0.5 (one-to-one). Count error: per field, |detected - annotated| over the "
        "annotated count, cells cut by the image edge excluded on both sides.",
        "",
        "| precision | recall | interior precision | interior recall | count error | s/field |",
        "|---|---|---|---|---|---|",
        f"| {v.get('precision')} | {v.get('recall')} | {v.get('interior_precision')} | "
        f"{v.get('interior_recall')} | {v.get('count_error_pct')}% | {v.get('seconds_per_field')} |",
        "",
        "Interior: cells not cut by the image's edge. Most detections that match no box are red "
        "cells the annotators did not box (checked by eye on the held-out fields), so precision "
        "against these annotations understates the detector.",
        "",
        "Held-out fields: " + ", ".join(card.get("validation_fields", [])),
        "",
    ]
    evaluations = card.get("evaluations", [])
    if evaluations:
        lines += ["## Evaluations", ""]
        for e in evaluations:
            lines.append(
                f"- {e.get('data', '')}: precision {e.get('precision')}, recall {e.get('recall')}, "
                f"count error {e.get('count_error_pct')}% on {e.get('images')} fields"
            )
    return "\n".join(lines) + "\n"


def load_detector(version: ModelVersion) -> det.Detector:
    """The version's Detector, loaded only after its SHA-256 check."""
    from classifier.registry import local_model_file

    with local_model_file(version) as path:
        return det.Detector.load(path, expected_sha256=version.sha256, threshold=version.threshold)


def evaluate_detector_version(version: ModelVersion, data: str, split: str = "all") -> dict:
    """Evaluate on a smear folder (all fields, or only the held-out 'validation' block) at the
    version's threshold; the summary is recorded in the version's metrics["evaluations"]."""
    from django.utils import timezone

    from training.detector import evaluate_detector
    from training.smears import load_fields, split_fields

    fields = load_fields(data)
    if split == "validation":
        val_fraction = (version.card or {}).get("hyperparameters", {}).get("val_fraction", 0.15)
        fields = split_fields(fields, val_fraction)[1]
    figures = evaluate_detector(load_detector(version), fields)
    result = {"version": version.name, "data": str(data), "split": split, **figures}
    metrics = dict(version.metrics or {})
    summary = {**result, "at": timezone.now().isoformat(timespec="seconds")}
    metrics["evaluations"] = [*metrics.get("evaluations", []), summary]
    version.metrics = metrics
    version.save(update_fields=["metrics"])
    return result


def reviewed_field_folder(dest: Path, base: str | None, log=print) -> Path:
    """An IML-layout folder of the base folder's fields (referenced, not copied) plus every field
    a reviewer corrected (cells added or removed), with its corrected boxes; those always train.

    Cells cut by the edge keep their boxes (the detector learns to find them; the count skips
    them). Returns the folder, for train_detector --include-reviewed.
    """
    import json

    from django.core.files.storage import default_storage

    from cases.fields.selectors import reviewed_field_boxes

    images = dest / "images"
    images.mkdir(parents=True, exist_ok=True)
    entries = []
    if base:
        base_folder = Path(base).resolve()
        for entry in json.loads((base_folder / "annotations.json").read_text()):
            absolute = str(base_folder / "images" / entry["image_name"])
            entries.append({**entry, "image_name": absolute})
    reviewed = reviewed_field_boxes()
    for field in reviewed:
        name = f"reviewed-{field.image_id}{Path(field.file).suffix.lower() or '.png'}"
        with default_storage.open(field.file, "rb") as source:
            (images / name).write_bytes(source.read())
        objects = [
            {"type": "red blood cell", "bbox": {k: str(cell[k]) for k in ("x", "y", "w", "h")}}
            for cell in field.boxes
        ]
        entries.append({"image_name": name, "objects": objects, "split": "train"})
    (dest / "annotations.json").write_text(json.dumps(entries))
    log(f"{len(reviewed)} reviewer-corrected fields added to the training fields")
    return dest
