"""evaluate_model, list_models and the registry's refusal of tampered files."""

import json

import keras
import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from classifier.models import ModelVersion
from classifier.preprocess import preprocess
from classifier.registry import active_version, register_version, verify_file
from tests.training.helpers import json_line
from training.data import list_folder

REQUIRED_KEYS = {"n", "accuracy", "auc", "sensitivity", "specificity", "threshold", "version"}


@pytest.fixture
def version(db, tiny_model_path):
    return register_version(
        name="tiny-eval", model_path=tiny_model_path, threshold=0.5, temperature=1.0
    )


def test_register_version_stores_an_inactive_copy_with_its_hash(version, tiny_model_path):
    assert not version.is_active
    assert version.file.name == "models/tiny-eval.keras"
    assert verify_file(version) == version.file.path
    assert active_version() is None
    with pytest.raises(ValueError, match="already exists"):
        register_version(name="tiny-eval", model_path=tiny_model_path, threshold=0.5)


def test_evaluate_json_last_line_matches_a_hand_count(version, nih_folder, var_dir, capsys):
    call_command(
        "evaluate_model", data=str(nih_folder), model_version="tiny-eval", json=True, reps=200
    )
    result = json_line(capsys)
    assert REQUIRED_KEYS <= set(result)
    assert result["version"] == "tiny-eval" and result["n"] == 80
    # Count by hand with the model's own predict() (temperature 1: calibrated == raw).
    examples = list_folder(nih_folder)
    x = np.stack([preprocess(e.read()) for e in examples])
    model = keras.models.load_model(verify_file(version), compile=False)
    called = model.predict(x, verbose=0)[:, 0] >= 0.5
    truth = np.array([e.label for e in examples]).astype(bool)
    expected = {
        "tp": int((called & truth).sum()),
        "fp": int((called & ~truth).sum()),
        "tn": int((~called & ~truth).sum()),
        "fn": int((~called & truth).sum()),
    }
    assert result["confusion_matrix"] == expected
    assert result["accuracy"] == pytest.approx((expected["tp"] + expected["tn"]) / 80)
    low, high = result["ci95"]["accuracy"]
    assert low <= result["accuracy"] <= high


def test_evaluation_writes_plots_and_records_them_on_the_version(version, nih_folder, var_dir):
    call_command("evaluate_model", data=str(nih_folder), model_version="tiny-eval", reps=50)
    version.refresh_from_db()
    (evaluation,) = version.metrics["evaluations"]
    for name in ("roc", "confusion_matrix", "reliability"):
        assert evaluation["plots"][name].startswith(str(var_dir / "evaluations" / "tiny-eval"))
    folder = var_dir / "evaluations" / "tiny-eval"
    assert {p.name for p in next(folder.iterdir()).iterdir()} >= {
        "roc.png",
        "confusion_matrix.png",
        "reliability.png",
        "metrics.json",
    }


def test_the_active_version_is_the_default(version, nih_folder, var_dir, capsys):
    ModelVersion.objects.filter(pk=version.pk).update(is_active=True)
    call_command("evaluate_model", data=str(nih_folder), json=True, reps=20)
    assert json_line(capsys)["version"] == "tiny-eval"


def test_without_an_active_version_evaluate_says_so(db, nih_folder):
    with pytest.raises(CommandError, match="no model version is active"):
        call_command("evaluate_model", data=str(nih_folder))


def test_a_tampered_model_file_is_refused_naming_both_hashes(version, nih_folder, var_dir):
    with open(version.file.path, "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(CommandError) as error:
        call_command("evaluate_model", data=str(nih_folder), model_version="tiny-eval")
    message = str(error.value)
    assert version.sha256 in message
    assert "expected sha256" in message and "found" in message
    actual = message.rsplit("found ", 1)[1].strip()
    assert len(actual) == 64 and actual != version.sha256


def test_list_models_shows_key_metrics(version, capsys):
    version.metrics = {"validation": {"accuracy": 0.9, "auc": 0.95, "sensitivity": 0.97}}
    version.save(update_fields=["metrics"])
    call_command("list_models")
    out = capsys.readouterr().out
    assert "tiny-eval" in out and "0.9500" in out and "0.9700" in out
    assert out.splitlines()[0].split()[:5] == ["name", "kind", "active", "created", "threshold"]


def test_export_writes_a_manifest_that_install_default_model_accepts(version, tmp_path, capsys):
    dest = tmp_path / "default_model"
    call_command("export_model", model_version="tiny-eval", dest=str(dest))
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["sha256"] == version.sha256 and manifest["file"] == "model.keras"
    assert {"threshold", "temperature", "quality_reference"} <= set(manifest)
    assert (dest / "card.json").exists() and (dest / "card.md").exists()
    version.delete()  # a fresh install: the registry does not know the model yet
    call_command("install_default_model", dir=str(dest))
    installed = ModelVersion.objects.get(name="tiny-eval")
    assert installed.is_active and installed.sha256 == manifest["sha256"]
