"""train_detector / evaluate_detector / export on synthetic fields: the lifecycle, not the quality
(the shipped detector's quality is measured by bench/segmentation.py on real photographs)."""

import json

import numpy as np
import pytest
from django.core.management import call_command

from classifier.models import ModelVersion
from training.detector import prepare, random_window
from training.smears import load_fields, split_fields


def test_training_windows_keep_each_cell_box_with_its_cell(smear_folder):
    field = prepare(load_fields(smear_folder)[0])
    window, target = random_window(field, np.random.default_rng(0), jitter=0.0)
    assert window.shape == (256, 256, 3) and target.shape == (64, 64, 6)
    centres = np.argwhere(target[..., 5] == 1)
    assert len(centres) > 3
    for gy, gx in centres:  # a cell (darker than the slide) lies under every centre
        y, x = gy * 4 + 2, gx * 4 + 2
        assert window[y, x].mean() < 225


def test_the_held_out_fields_are_the_last_by_name(smear_folder):
    train, validation = split_fields(load_fields(smear_folder), 0.34)
    assert [f.name for f in validation] == ["SYN0004.JPG", "SYN0005.JPG"]
    assert not {f.name for f in train} & {f.name for f in validation}


@pytest.mark.django_db
def test_train_detector_registers_an_inactive_detector_with_its_card(smear_folder, var_dir, capsys):
    call_command(
        "train_detector",
        data=str(smear_folder),
        name="det-test",
        epochs=2,
        windows_per_field=2,
        batch_size=4,
        val_fraction=0.34,
    )
    out = capsys.readouterr().out
    assert "epoch 2/2" in out and "count error" in out
    version = ModelVersion.objects.get(name="det-test")
    assert version.kind == ModelVersion.Kind.DETECTOR and not version.is_active
    assert version.card["validation_fields"] == ["SYN0004.JPG", "SYN0005.JPG"]
    assert {"precision", "recall", "count_error_pct"} <= set(version.metrics["validation"])
    assert 0.15 <= version.threshold <= 0.7

    call_command("activate_model", "det-test")
    call_command("evaluate_detector", data=str(smear_folder), split="validation", json=True)
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["images"] == 2 and result["version"] == "det-test"
    assert {"precision", "recall", "count_error_pct", "seconds_per_field"} <= set(result)
    version.refresh_from_db()
    assert version.metrics["evaluations"][-1]["split"] == "validation"


@pytest.mark.django_db
def test_a_detector_is_exported_and_installed_beside_the_classifier(
    smear_folder, var_dir, tmp_path, tiny_model_path
):
    from tests.conftest import register_model

    call_command(
        "train_detector", data=str(smear_folder), name="det-x", epochs=1, windows_per_field=1,
        batch_size=4, val_fraction=0.34,
    )  # fmt: skip
    call_command("export_model", model_version="det-x", dest=str(tmp_path / "shipped"))
    manifest = json.loads((tmp_path / "shipped" / "manifest.json").read_text())
    assert manifest["kind"] == "detector"
    assert "Cell detector det-x" in (tmp_path / "shipped" / "card.md").read_text()
    ModelVersion.objects.all().delete()
    classifier = register_model(tiny_model_path, name="cls-1")
    call_command("install_default_model", dir=[str(tmp_path / "shipped")])
    assert ModelVersion.objects.get(name="det-x").is_active
    classifier.refresh_from_db()
    assert classifier.is_active  # activating a detector leaves the active classifier alone


@pytest.mark.django_db
def test_reviewer_corrected_fields_join_the_training_fields(
    smear_folder, case, clinician, reviewer, tmp_path
):
    from cases.fields import services as field_reviews
    from cases.review import services as reviews
    from tests.cases.field_helpers import add_field
    from training.detector_registry import reviewed_field_folder

    field, cells = add_field(case, clinician, [0.1, 0.2, 0.3])
    reviews.review_claim(case=case, by=reviewer)
    field_reviews.cell_remove(cell=cells[0], by=reviewer)
    folder = reviewed_field_folder(tmp_path / "data", str(smear_folder), log=lambda _: None)
    fields = load_fields(folder)
    reviewed = [f for f in fields if f.train_only]
    assert len(fields) == 7 and len(reviewed) == 1
    assert len(reviewed[0].boxes) == 2  # the removed detection is gone
    assert reviewed[0].read().shape[:2] == (field.height, field.width)
    train, validation = split_fields(fields, 0.34)
    assert reviewed[0] in train and reviewed[0] not in validation
