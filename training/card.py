"""The model card: what the model is, what it was trained on, how well it does and what it is for.

Written as card.json (for the registry and tools) and card.md (for people), from one dict.
"""

from __future__ import annotations

import json
import math
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

from training.calibration import THRESHOLD_RULE

INTENDED_USE = (
    "Research and decision support: flags single red-blood-cell crops of Giemsa-stained thin "
    "smears as parasitized or uninfected for review by a trained microscopist. Not a stand-alone "
    "diagnostic device; a negative result does not rule out malaria."
)
LIMITATIONS = [
    "Trained on P. falciparum cells from one hospital's microscopes (NIH/NLM, Chittagong); other "
    "species, stains, cameras and magnifications are a domain shift and need their own evaluation.",
    "Works on single-cell crops; whole-field images must be segmented first.",
    "Validation figures come from held-out patients of the same collection; intervals are "
    "bootstrapped over patients and are wide when there are few of them.",
    "Dropout (rate in the hyperparameters) is active only in training; at inference the "
    "network is deterministic.",
]
ARCHITECTURE = (
    "Input 150x150x3 in [0, 1] -> Conv2D(32, 3x3, ReLU) conv1 -> MaxPool 2 -> Conv2D(64, 3x3, "
    "ReLU) conv2 -> MaxPool 2 -> Conv2D(128, 3x3, ReLU) conv3 -> MaxPool 2 -> Flatten -> "
    "Dropout -> Dense(128, ReLU) -> Dropout -> Dense(1, sigmoid) 'probability'"
)
PREPROCESSING = (
    "classifier.preprocess: decode (EXIF-rotated, to RGB uint8), resize to 150x150 (area "
    "averaging when shrinking, cubic when growing), divide by 255; identical in training, "
    "evaluation and serving"
)


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}; no GPU"


def build_card(
    config, split: dict, state: dict, result: dict, model_path: Path, parameters: int
) -> dict:
    """The card as a dict (JSON-ready)."""
    history = state.get("history", {})
    return {
        "name": config.name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_file": Path(model_path).name,
        "data": {
            "source": str(config.data),
            "include_reviewed": config.include_reviewed,
            "split_method": split["method"],
            "train": {k: v for k, v in split["train"].items() if k != "groups"},
            "validation": {k: v for k, v in split["validation"].items() if k != "groups"},
            "validation_groups": split["validation"]["groups"],
        },
        "architecture": ARCHITECTURE,
        "parameters": int(parameters),
        "preprocessing": PREPROCESSING,
        "hyperparameters": _hyperparameters(config),
        "training": {
            "epochs_run": state.get("epoch"),
            "best_epoch": state.get("best_epoch"),
            "stopped_early": bool(state.get("stopped_early")),
            "stopped_by_time_budget": bool(state.get("stopped_by_budget")),
            "fit_seconds": round(state.get("fit_seconds", 0.0), 1),
            "seconds_per_epoch": _mean(history.get("seconds", [])),
            "machine": _machine(),
            "final_lr": state.get("lr"),
        },
        "threshold": result["threshold"],
        "threshold_rule": THRESHOLD_RULE[config.threshold_rule].format(
            target=config.sensitivity_target
        ),
        "threshold_candidates": result.get("threshold_candidates"),
        "temperature": result["temperature"],
        "calibration": (
            "temperature scaling fitted on the validation patients by minimising the negative "
            "log-likelihood; calibrated p = sigmoid(logit / T), logit = input of the final sigmoid"
        ),
        "validation": _clean(result["metrics"]),
        "intended_use": INTENDED_USE,
        "limitations": LIMITATIONS,
    }


def _hyperparameters(config) -> dict:
    return {
        "optimizer": "Adam",
        "learning_rate": config.learning_rate,
        "batch_size": config.batch_size,
        "max_epochs": config.epochs,
        "max_minutes": config.max_minutes,
        "dropout": config.dropout,
        "loss": "binary cross-entropy"
        + (f" with label smoothing {config.label_smoothing}" if config.label_smoothing else ""),
        "early_stopping": (
            f"{_SELECTION[config.selection_metric]}, patience "
            f"{config.stop_patience}, the weights of the best epoch restored"
        ),
        **_start_and_schedule(config),
        "augmentation": config.augmentation,
        "weight_average": (
            f"exponential moving average of the weights, momentum {config.ema_momentum} per "
            "step; the average is what is validated, early-stopped on and shipped"
            if config.ema_momentum
            else "none (the raw weights of the best epoch are shipped)"
        ),
        "seed": config.seed,
    }


_SELECTION = {
    "val_loss": "validation loss",
    "val_loss_calibrated": "validation loss after temperature scaling",
}


def _start_and_schedule(config) -> dict:
    """Where the weights started and how the learning rate moved."""
    lines = {}
    if config.init_from:
        lines["warm_start"] = (
            f"weights initialised from {config.init_note or config.init_from} "
            f"(SHA-256 {config.init_sha256})"
        )
    if config.lr_schedule == "cosine":
        lines["learning_rate_schedule"] = (
            f"cosine decay per epoch from {config.learning_rate} to {config.min_lr} over "
            f"{config.epochs} epochs"
        )
    else:
        lines["reduce_lr_on_plateau"] = (
            f"the same validation loss, patience {config.lr_patience}, factor {config.lr_factor}, "
            f"min {config.min_lr}"
        )
    return lines


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


def _clean(value):
    """NaN -> None, recursively (strict JSON)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _fmt(metrics: dict, key: str) -> str:
    value, ci = metrics.get(key), metrics.get("ci95", {}).get(key)
    if value is None:
        return "n/a"
    return f"{value:.4f}" + (f" (95% CI {ci[0]:.4f}–{ci[1]:.4f})" if ci else "")


def to_markdown(card: dict) -> str:
    """A readable rendering of the card."""
    d, t, v = card["data"], card["training"], card["validation"]
    lines = [
        f"# Model card: {card['name']}",
        "",
        f"Created {card['created']}. File `{card['model_file']}`.",
        "",
        "## Intended use",
        card["intended_use"],
        "",
        "## Data",
        f"- Source: `{d['source']}` (NIH/NLM malaria cell images, Rajaraman et al., PeerJ 2018)"
        + ("; plus reviewer-labelled images" if d["include_reviewed"] else ""),
        f"- Split: {d['split_method']}.",
        f"- Training: {d['train']['images']} images ({_counts(d['train'])}), "
        f"{d['train']['n_groups']} patients.",
        f"- Validation: {d['validation']['images']} images ({_counts(d['validation'])}), "
        f"{d['validation']['n_groups']} patients: {', '.join(d['validation_groups'])}.",
        "",
        "## Model",
        f"- Architecture: {card['architecture']} ({card['parameters']:,} parameters).",
        f"- Preprocessing: {card['preprocessing']}.",
        "- Dropout is active only in training; inference is deterministic.",
        "",
        "## Training",
        *[f"- {k.replace('_', ' ')}: {val}" for k, val in card["hyperparameters"].items()],
        f"- Epochs run: {t['epochs_run']} (best epoch {t['best_epoch']}; stopped early: "
        f"{t['stopped_early']}; stopped by time budget: {t['stopped_by_time_budget']}).",
        f"- Training time: {t['fit_seconds'] / 60:.1f} min ({t['seconds_per_epoch']} s/epoch) "
        f"on {t['machine']}.",
        "",
        "## Operating point and calibration",
        f"- Threshold: {card['threshold']:.4f} — rule: {card['threshold_rule']}.",
        *_candidate_lines(card.get("threshold_candidates")),
        f"- Temperature: {card['temperature']:.4f} — {card['calibration']}.",
        f"- Validation NLL {v['calibration']['nll_before']:.4f} -> "
        f"{v['calibration']['nll_after']:.4f}, ECE {v['calibration']['ece_before']:.4f} -> "
        f"{v['calibration']['ece_after']:.4f} (before -> after temperature scaling).",
        "",
        *_validation_lines(v),
        *_evaluation_lines(card.get("evaluations") or []),
        *([f"## Notes\n{card['notes']}", ""] if card.get("notes") else []),
        "## Limitations",
        *[f"- {item}" for item in card["limitations"]],
        "",
    ]
    return "\n".join(lines)


def _validation_lines(v: dict) -> list[str]:
    """The validation table, the confusion matrix and the figures per source."""
    cm = v["confusion_matrix"]
    return [
        f"## Validation ({v['n']} images, {v['n_groups']} patients; 95% CI: bootstrap over "
        f"patients, {v['bootstrap']['reps']} reps)",
        "| metric | value |",
        "|---|---|",
        *[
            f"| {k} | {_fmt(v, k)} |"
            for k in ("accuracy", "auc", "sensitivity", "specificity", "precision", "npv", "f1")
        ],
        "",
        f"Confusion matrix at the threshold: TP {cm['tp']}, FN {cm['fn']}, FP {cm['fp']}, "
        f"TN {cm['tn']}.",
        "",
        *_source_lines(v.get("per_source") or {}, v.get("validated_sources") or {}),
    ]


def _source_lines(per_source: dict, judged: dict) -> list[str]:
    """Per source: its figures at the threshold, and whether it is validated (in the guard's
    reference) or refused by the domain guard, with the criteria it misses."""
    if not per_source:
        return []
    lines = [
        "## Per source (validation groups, at the threshold)",
        "| source | cells | groups | AUC | sensitivity | specificity | parasitemia error "
        "(points/group) | domain guard |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for source, row in per_source.items():
        verdict = judged.get(source, {})
        status = (
            "validated"
            if verdict.get("validated", True)
            else "refused: " + "; ".join(verdict.get("reasons", []))
        )
        error = (row.get("parasitemia") or {}).get("mae_pct_points")
        lines.append(
            f"| {source} | {row['n']} | {row['n_groups']} | {_num(row.get('auc'))} | "
            f"{_num(row.get('sensitivity'))} | {_num(row.get('specificity'))} | "
            f"{'—' if error is None else error} | {status} |"
        )
    return [*lines, ""]


def _num(value) -> str:
    return "—" if value is None or value != value else f"{value:.4f}"


def _candidate_lines(candidates: dict | None) -> list[str]:
    if not candidates:
        return []
    parts = ", ".join(f"{k} patients {v:.4f}" for k, v in candidates.items())
    return [f"- Threshold meeting the target on each set alone: {parts}."]


def _evaluation_lines(evaluations: list[dict]) -> list[str]:
    """One table row per evaluate_model run recorded on the version."""
    if not evaluations:
        return []
    lines = [
        "## Evaluations (evaluate_model; 95% CI: bootstrap over patients)",
        "| data | n | accuracy | AUC | sensitivity | specificity |",
        "|---|---|---|---|---|---|",
    ]
    for e in evaluations:
        cells = " | ".join(_fmt(e, k) for k in ("accuracy", "auc", "sensitivity", "specificity"))
        lines.append(f"| `{e['data']}` ({e['evaluated_at']}) | {e['n']} | {cells} |")
    return [*lines, ""]


def _counts(side: dict) -> str:
    return ", ".join(f"{n} {name}" for name, n in side["per_class"].items())


def write_card(card: dict, folder: Path) -> tuple[Path, Path]:
    """Write card.json and card.md into folder."""
    folder = Path(folder)
    json_path, md_path = folder / "card.json", folder / "card.md"
    json_path.write_text(json.dumps(_clean(card), indent=2))
    md_path.write_text(to_markdown(_clean(card)))
    return json_path, md_path
