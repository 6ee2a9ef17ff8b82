"""evaluate_model on smear folders (cells cut from the annotated boxes, per-stage sensitivity,
--split) and the domain guard's out_of_domain_fraction, with domain_reference."""

import numpy as np
import pytest
from django.core.management import call_command

from classifier.registry import register_version
from classifier.synthetic import write_smear_folder
from tests.training.helpers import json_line
from training.evaluate import load_evaluation_data
from training.smears import load_fields

REQUIRED_KEYS = {"n", "accuracy", "auc", "sensitivity", "specificity", "threshold", "version"}


@pytest.fixture(scope="module")
def smear_folder(tmp_path_factory):
    return write_smear_folder(tmp_path_factory.mktemp("smears"), 6, seed=3)


@pytest.fixture
def version(db, tiny_model_path):
    return register_version(
        name="tiny-smear", model_path=tiny_model_path, threshold=0.5, temperature=1.0
    )


def test_a_smear_folder_gives_one_cell_per_box_inside_the_image(smear_folder):
    cells = load_evaluation_data(smear_folder)
    expected = 0
    for field in load_fields(smear_folder):
        width, height = 640, 480
        expected += int(field.counted(width, height).sum())
    assert cells.layout == "smear" and len(cells.images) == expected
    assert cells.images.shape[1:] == (150, 150, 3)
    assert set(cells.stages[cells.labels == 1]) == {"ring"}
    assert set(cells.groups) == {f.name for f in load_fields(smear_folder)}


def test_the_validation_split_holds_the_last_fields_by_name(smear_folder):
    cells = load_evaluation_data(smear_folder, split="validation")
    assert set(cells.groups) == {"SYN0005.JPG"}


def test_evaluate_on_smears_reports_stages_and_the_out_of_domain_share(
    version, nih_folder, smear_folder, var_dir, capsys
):
    call_command(
        "domain_reference",
        model_version="tiny-smear",
        data=[str(nih_folder)],
        per_group=10,
        include_unvalidated=True,
    )
    assert "stored the domain reference of tiny-smear" in capsys.readouterr().out
    call_command(
        "evaluate_model", data=str(smear_folder), model_version="tiny-smear", json=True, reps=50
    )
    result = json_line(capsys)
    assert REQUIRED_KEYS <= set(result)
    assert result["layout"] == "smear" and result["group_unit"] == "field"
    assert result["n_groups"] == 6
    assert set(result["stage_sensitivity"]) == {"ring", "trophozoite", "schizont", "gametocyte"}
    assert 0 < result["stage_sensitivity"]["ring"]["n"] <= 12  # edge-cut rings left out
    assert result["stage_sensitivity"]["schizont"] == {"n": 0, "sensitivity": None}
    assert 0.0 <= result["out_of_domain_fraction"] <= 1.0
    assert result["domain"]["groups_judged"] == 6
    assert result["parasitemia"]["fields"] == 6 and result["parasitemia"]["mae_pct_points"] >= 0
    assert set(result["sensitivity_at_specificity"]) == {"0.99", "0.995"}
    assert result["acceptance"]["criteria"]["parasitemia_error"] == 0.5
    assert isinstance(result["acceptance"]["failures"], list)


def test_the_groups_a_reference_was_built_on_are_in_its_domain(
    version, nih_folder, var_dir, capsys
):
    call_command(
        "domain_reference",
        model_version="tiny-smear",
        data=[str(nih_folder)],
        per_group=10,
        include_unvalidated=True,
    )
    call_command(
        "evaluate_model", data=str(nih_folder), model_version="tiny-smear", json=True, reps=50
    )
    result = json_line(capsys)
    assert result["layout"] == "nih" and "stage_sensitivity" not in result
    assert result["out_of_domain_fraction"] <= 0.125  # at most 1 of the 8 patients


def test_without_a_domain_reference_the_fraction_is_null(version, nih_folder, var_dir, capsys):
    call_command(
        "evaluate_model", data=str(nih_folder), model_version="tiny-smear", json=True, reps=50
    )
    result = json_line(capsys)
    assert result["out_of_domain_fraction"] is None
    assert np.isfinite(result["accuracy"])


def test_a_folder_the_version_does_not_hold_on_stays_out_of_its_domain(
    db, tiny_model_path, nih_folder, smear_folder, var_dir, capsys
):
    """Threshold 0 calls every cell parasitized: sensitivity 1, specificity 0. With the
    specificity criterion waived, the NIH folder passes and the smear folder (about 94 points
    of parasitemia error per field) stays out, named with its reason."""
    from django.core.management.base import CommandError

    from training.domain_reference import reference_from_folders
    from training.evaluate import load_verified_model

    everything = register_version(
        name="calls-everything", model_path=tiny_model_path, threshold=0.0, temperature=1.0
    )
    model = load_verified_model(everything)
    criteria = {"sensitivity": 0.85, "specificity": 0.0, "parasitemia_error": 0.5}
    reference = reference_from_folders(
        model,
        [nih_folder, smear_folder],
        per_group=10,
        version=everything,
        acceptance=criteria,
    )
    assert set(reference["group_sources"]) == {"nih"}
    [(folder, reasons)] = reference["not_validated"].items()
    assert folder == str(smear_folder) and "parasitemia error" in reasons[0]

    # With the default criteria (specificity 0.95) no folder is left: the command refuses and
    # the version keeps the reference it had.
    with pytest.raises(CommandError, match="does not hold on any"):
        call_command("domain_reference", model_version="calls-everything", data=[str(nih_folder)])
    everything.refresh_from_db()
    assert "domain" not in (everything.quality_reference or {})
    call_command(
        "domain_reference",
        model_version="calls-everything",
        data=[str(nih_folder)],
        include_unvalidated=True,
    )
    assert "stored the domain reference of calls-everything" in capsys.readouterr().out
