"""Reviewer labels as training data (--include-reviewed)."""

import hashlib
import json

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.core.management.base import CommandError

from cases import models as case_models
from tests.training.helpers import train_small
from training.data import list_folder
from training.reviewed import reviewed_examples


def _image(case, clinician, data: bytes, name: str):
    return case_models.Image.objects.create(
        case=case,
        file=ContentFile(data, name=name),
        original_name=name,
        sha256=hashlib.sha256(data).hexdigest(),
        width=64,
        height=64,
        uploaded_by=clinician,
    )


def _review(image, reviewer, label: str, decision: str = "confirm"):
    reason = "" if decision == "confirm" else "other"
    return case_models.Review.objects.create(
        image=image, reviewer=reviewer, decision=decision, label=label, reason_code=reason
    )


@pytest.fixture
def reviewed_case(case, clinician, reviewer, nih_folder):
    examples = list_folder(nih_folder)
    first = _image(case, clinician, examples[0].read(), "a.png")
    second = _image(case, clinician, examples[-1].read(), "b.png")
    _image(case, clinician, examples[1].read(), "unreviewed.png")
    _review(first, reviewer, "parasitized")
    _review(first, reviewer, "uninfected", decision="override")  # the latest review wins
    _review(second, reviewer, "uninfected")
    return case


def test_reviewed_images_carry_the_latest_label_and_their_case_as_group(reviewed_case):
    examples = reviewed_examples()
    assert [(label, group) for _, label, group in examples] == [
        (0, f"case-{reviewed_case.pk}"),
        (0, f"case-{reviewed_case.pk}"),
    ]
    assert all(isinstance(data, bytes) and data[:4] == b"\x89PNG" for data, _, _ in examples)


def test_include_reviewed_adds_them_to_training_as_one_group(reviewed_case, nih_folder, var_dir):
    train_small(nih_folder, name="with-reviews", include_reviewed=True)
    split = json.loads((var_dir / "training" / "with-reviews" / "split.json").read_text())
    group = f"case-{reviewed_case.pk}"
    sides = [side for side in ("train", "validation") if group in split[side]["groups"]]
    assert len(sides) == 1
    assert split["train"]["images"] + split["validation"]["images"] == 82


def test_a_sites_reviewed_cells_are_an_evaluation_set(
    reviewed_case, other_site, tiny_model_path, var_dir, capsys
):
    from tests.conftest import register_model

    register_model(tiny_model_path, name="tiny-site")
    call_command("evaluate_model", reviewed=True, site="ctg", json=True, reps=20)
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == 2 and result["layout"] == "reviewed" and result["group_unit"] == "case"
    assert result["data"] == "reviewed cells of site ctg"
    with pytest.raises(CommandError, match="no reviewed cells in site 'other'"):
        call_command("evaluate_model", reviewed=True, site="other")
    with pytest.raises(CommandError, match="either --data DIR or --reviewed"):
        call_command("evaluate_model")
