"""The last steps of a training run, after the fit has stopped.

Calibrate on the validation patients (temperature, then the threshold rule), measure with
patient-bootstrap intervals, write the model file, plots and card, take the quality-gate and
domain-guard references and register a new, inactive ModelVersion. Re-runnable: ``train_model
--resume`` on a finished fit only repeats these steps.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from classifier.calibration import calibrate
from training import calibration
from training.metrics import summarize
from training.pipeline import predict_logits
from training.run import Log, RunData, TrainConfig

QUALITY_SAMPLE = 1000


def calibrate_on_validation(config: TrainConfig, run: RunData, model) -> dict:
    """Temperature, threshold and metrics on the validation patients."""
    y, target = run.labels[run.val_idx], config.sensitivity_target
    logits = predict_logits(model, run.images[run.val_idx])
    temperature = calibration.fit_temperature(logits, y)
    probabilities = calibrate(logits, temperature)
    candidates = {"validation": calibration.choose_threshold(probabilities, y, target)}
    if config.threshold_rule == "validation+training":
        # The same temperature applies; the training images are seen without augmentation.
        y_train = run.labels[run.train_idx]
        train_probabilities = calibrate(
            predict_logits(model, run.images[run.train_idx]), temperature
        )
        candidates["training"] = calibration.choose_threshold(train_probabilities, y_train, target)
    threshold = min(candidates.values())
    metrics = summarize(
        y, probabilities, run.groups[run.val_idx], threshold, config.bootstrap_reps, config.seed
    )
    if run.origins is not None and len(set(run.origins[run.val_idx].tolist())) > 1:
        from training.sources import per_source, validated_sources

        metrics["per_source"] = per_source(
            run.origins[run.val_idx],
            run.stages[run.val_idx],
            run.groups[run.val_idx],
            y,
            probabilities,
            threshold,
        )
        metrics["validated_sources"] = validated_sources(metrics["per_source"], config.acceptance)
    raw = calibrate(logits, 1.0)
    metrics["calibration"] = {
        "nll_before": calibration.nll(logits, y, 1.0),
        "nll_after": calibration.nll(logits, y, temperature),
        "ece_before": calibration.expected_calibration_error(raw, y),
        "ece_after": calibration.expected_calibration_error(probabilities, y),
        "reliability": calibration.reliability_bins(probabilities, y),
    }
    return {
        "temperature": temperature,
        "threshold": threshold,
        "threshold_candidates": candidates,
        "metrics": metrics,
        "labels": y,
        "probabilities": probabilities,
    }


def save_inference_model(config: TrainConfig, model, path: Path) -> Path:
    """The trained weights in a fresh network without optimizer state (a third of the size)."""
    from classifier.architecture import build_model

    fresh = build_model(config.learning_rate, config.dropout)
    fresh.set_weights(model.get_weights())
    fresh.save(path)
    return path


def unvalidated_sources(metrics: dict, log: Log) -> dict[str, list[str]]:
    """{source: reasons} of the sources whose validation figures miss the acceptance criteria.

    Those sources' groups stay out of the domain guard's reference, so the guard keeps refusing
    their stain. When no source meets the criteria, every source is returned: the reference is
    then built from all groups but refuses every group (classifier.domain: validated on nothing).
    """
    judged = metrics.get("validated_sources") or {}
    failing = {s: j["reasons"] for s, j in judged.items() if not j["validated"]}
    for source, reasons in failing.items():
        log(f"  {source} is not validated ({'; '.join(reasons)}): the domain guard refuses it")
    if judged and len(failing) == len(judged):
        log("  no source meets the acceptance criteria: the domain guard refuses every group")
    return failing


def quality_reference(
    run: RunData, model, seed: int, log: Log, exclude: dict[str, list[str]] | None = None
) -> dict:
    """classifier.quality.build_reference on a sample of training images, if that module exists;
    the domain guard's reference (from every group whose source is not in exclude) inside it."""
    try:
        from classifier.quality import build_reference
    except ImportError:
        log("classifier.quality is not available: no quality reference stored")
        return {}
    from classifier.preprocess import to_input
    from training.domain_reference import reference_from_run

    rng = np.random.default_rng(seed)
    idx = rng.choice(run.train_idx, min(QUALITY_SAMPLE, len(run.train_idx)), replace=False)
    idx = np.sort(idx)
    reference = build_reference(model, to_input(run.images[idx]), run.labels[idx])
    try:
        # The domain guard's reference: every training and validation group (classifier.domain).
        reference["domain"] = reference_from_run(
            model, run.images, np.asarray(run.groups), seed, origins=run.origins, exclude=exclude
        )
    except ValueError as exc:  # fewer than 5 groups of 10+ cells: the guard cannot be calibrated
        log(f"no domain reference stored: {exc}")
    return reference


def finalize(config: TrainConfig, folder: Path, run: RunData, model, state: dict, log: Log):
    """Calibrate, write model, plots and card, register the version; returns the ModelVersion."""
    from training import card, plots

    started = time.monotonic()
    result = calibrate_on_validation(config, run, model)
    m = result["metrics"]
    log(
        f"validation: T={result['temperature']:.3f} threshold={result['threshold']:.4f} "
        f"accuracy={m['accuracy']:.4f} auc={m['auc']:.4f} sensitivity={m['sensitivity']:.4f} "
        f"specificity={m['specificity']:.4f}"
    )
    for origin, row in m.get("per_source", {}).items():
        log(
            f"  {origin}: n={row['n']} accuracy={row['accuracy']:.4f} auc={row['auc']:.4f} "
            f"sensitivity={row['sensitivity']:.4f} specificity={row['specificity']:.4f}"
            + (
                f" parasitemia error {row['parasitemia']['mae_pct_points']} points"
                if "parasitemia" in row
                else ""
            )
        )
    model_path = save_inference_model(config, model, folder / "model.keras")
    m["plots"] = plots.write_all(
        folder / "validation", result["labels"], result["probabilities"], result["threshold"]
    )
    reference = quality_reference(run, model, config.seed, log, unvalidated_sources(m, log))
    split = json.loads((folder / "split.json").read_text())
    model_card = card.build_card(config, split, state, result, model_path, model.count_params())
    card.write_card(model_card, folder)
    version = _register(config, model_path, result, model_card, reference, log)
    log(f"finalized in {time.monotonic() - started:.0f}s; registered {version.name} (inactive)")
    return version


def _register(config, model_path, result, model_card, reference, log: Log):
    from classifier.registry import register_version

    metrics = {"validation": _jsonable(result["metrics"]), "evaluations": []}
    return register_version(
        name=config.name,
        model_path=model_path,
        threshold=result["threshold"],
        temperature=result["temperature"],
        metrics=metrics,
        card=model_card,
        quality_reference=reference,
    )


def _jsonable(value):
    """Replace NaN by None so that the value is valid JSON everywhere."""
    return json.loads(json.dumps(value, default=float).replace("NaN", "null"))
