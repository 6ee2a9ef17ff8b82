"""Export a registered version as a shipped default (classifier/default_model/ for the classifier,
classifier/default_detector/ for the cell detector).

Writes model.keras (the verified stored file), card.json and card.md (the version's card plus
its recorded evaluations) and manifest.json (name, file, sha256, threshold, temperature,
quality_reference, metrics), which classifier's install_default_model registers on a fresh
install.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from classifier.hashing import sha256_of
from classifier.models import ModelVersion
from classifier.registry import local_model_file
from training.card import write_card

CALIBRATION_NOTE = (
    "p = sigmoid(logit / temperature), logit = input of the final sigmoid; "
    "parasitized when p >= threshold"
)
DETECTOR_NOTE = "a cell wherever the centre heat map has a 3x3 local maximum >= threshold"


def export_version(version: ModelVersion, dest: Path, note: str = "") -> dict:
    """Copy the version's files into dest; returns the manifest."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    model_path = dest / "model.keras"
    with local_model_file(version) as verified:
        shutil.copyfile(verified, model_path)
    sha = sha256_of(model_path)
    if sha != version.sha256:
        raise ValueError(f"copy of {version.name} has sha256 {sha}, expected {version.sha256}")
    if version.is_detector:
        from training.detector_registry import detector_card_markdown

        card = {**version.card, "evaluations": (version.metrics or {}).get("evaluations", [])}
        if note:
            card["notes"] = note
        (dest / "card.json").write_text(json.dumps(card, indent=2) + "\n")
        (dest / "card.md").write_text(detector_card_markdown(card))
    elif version.card:
        evaluations = (version.metrics or {}).get("evaluations", [])
        extra = {"evaluations": evaluations, **({"notes": note} if note else {})}
        write_card({**version.card, **extra}, dest)
    else:  # registered by hand, without training's card
        (dest / "card.json").write_text("{}\n")
        (dest / "card.md").write_text(f"# {version.name}\n\nNo model card was recorded.\n")
    manifest = {
        "name": version.name,
        "kind": version.kind,
        "file": model_path.name,
        "sha256": sha,
        "threshold": version.threshold,
        "temperature": version.temperature,
        "calibration": DETECTOR_NOTE if version.is_detector else CALIBRATION_NOTE,
        "metrics": version.metrics,
        "quality_reference": version.quality_reference,
    }
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
