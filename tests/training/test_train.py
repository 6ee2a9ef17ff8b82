"""train_model end to end on synthetic cells: split, artefacts, registration and resume."""

import json

import keras
import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from classifier.models import ModelVersion
from tests.training.helpers import SMALL, train_small
from training.run import TrainConfig, cosine_lr
from training.train import train


class Interrupted(Exception):
    """Stands for a killed process in the resume test."""


class InterruptAfterEpoch(keras.callbacks.Callback):
    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise Interrupted


def _config(nih_folder, tmp_path, name: str, epochs: int) -> TrainConfig:
    return TrainConfig(
        data=str(nih_folder),
        name=name,
        output=str(tmp_path / name),
        epochs=epochs,
        bootstrap_reps=50,
        **SMALL,
    )


@pytest.mark.django_db
def test_train_model_writes_card_plots_and_an_inactive_version(nih_folder, var_dir, capsys):
    train_small(nih_folder, epochs=2, name="synthetic-v1")
    run = var_dir / "training" / "synthetic-v1"
    split = json.loads((run / "split.json").read_text())
    assert not set(split["train"]["groups"]) & set(split["validation"]["groups"])
    assert split["validation"]["n_groups"] == 2
    card = json.loads((run / "card.json").read_text())
    assert card["threshold_rule"].startswith("the highest threshold")
    assert card["data"]["validation"]["images"] == split["validation"]["images"]
    assert "Not a stand-alone diagnostic device" in (run / "card.md").read_text()
    for plot in ("roc.png", "confusion_matrix.png", "reliability.png"):
        assert (run / "validation" / plot).stat().st_size > 1000
    assert (run / "cache" / "images.npy").exists()
    version = ModelVersion.objects.get(name="synthetic-v1")
    assert not version.is_active
    assert version.file.name == "models/synthetic-v1.keras"
    assert version.threshold == card["threshold"] and version.temperature == card["temperature"]
    assert 0 <= version.metrics["validation"]["accuracy"] <= 1
    assert version.quality_reference  # classifier.quality.build_reference on training images
    out = capsys.readouterr().out
    assert "epoch 2/2" in out and "ETA" in out and "val_auc" in out


@pytest.mark.django_db
@pytest.mark.parametrize("ema", [None, 0.9])
def test_a_run_resumes_after_an_interruption(nih_folder, tmp_path, var_dir, ema):
    config = _config(nih_folder, tmp_path, "resumable", epochs=2)
    config.ema_momentum = ema
    with pytest.raises(Interrupted):
        train(config, log=lambda _: None, callbacks=[InterruptAfterEpoch(1)])
    state = json.loads((tmp_path / "resumable" / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 1 and len(state["history"]["loss"]) == 1
    first_loss = state["history"]["loss"][0]

    messages = []
    version = train(config, resume=True, log=messages.append)
    assert any("resuming after epoch 1" in m for m in messages)
    history = json.loads((tmp_path / "resumable" / "history.json").read_text())
    assert len(history["loss"]) == 2 and history["loss"][0] == first_loss
    assert len(history["val_auc"]) == 2
    # The optimizer state came back too: its step counter spans both epochs.
    last = keras.models.load_model(tmp_path / "resumable" / "checkpoint" / "last.keras")
    steps_per_epoch = -(-60 // 16)  # 6 of the 8 patients train: 60 images
    assert int(last.optimizer.iterations) == 2 * steps_per_epoch
    assert version.name == "resumable"


@pytest.mark.django_db
def test_a_second_run_into_the_same_folder_needs_resume(nih_folder, tmp_path, var_dir):
    config = _config(nih_folder, tmp_path, "once", epochs=1)
    train(config, log=lambda _: None)
    with pytest.raises(FileExistsError):
        train(config, log=lambda _: None)


def test_the_cosine_schedule_runs_from_the_learning_rate_down_to_the_floor():
    config = TrainConfig(data="-", name="c", output="-", epochs=5, learning_rate=1e-3, min_lr=1e-5)
    rates = [cosine_lr(config, epoch) for epoch in range(5)]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-5)
    assert rates[2] == pytest.approx((1e-3 + 1e-5) / 2)
    assert all(a > b for a, b in zip(rates, rates[1:], strict=False))


@pytest.mark.django_db
def test_a_warm_started_cosine_run_starts_from_the_versions_weights(nih_folder, var_dir):
    call_command(
        "train_model", data=str(nih_folder), epochs=1, batch_size=16, val_fraction=0.25,
        seed=3, name="base",
    )  # fmt: skip
    base = ModelVersion.objects.get(name="base")
    seen = {}

    class FirstWeights(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen["weights"] = [w.copy() for w in self.model.get_weights()]

    config = _config(nih_folder, var_dir, "tuned", epochs=2)
    config.learning_rate, config.min_lr, config.lr_schedule = 1e-4, 1e-6, "cosine"
    config.init_from, config.init_sha256 = base.file.path, base.sha256
    config.init_note = "version base"
    config.max_minutes = 60.0  # not reached: a run that ends at its last epoch is not "stopped"
    messages = []
    train(config, log=messages.append, callbacks=[FirstWeights()])
    start = keras.models.load_model(base.file.path, compile=False)
    assert all((a == b).all() for a, b in zip(seen["weights"], start.get_weights(), strict=True))
    assert any("warm start from version base" in m for m in messages)
    history = json.loads((var_dir / "tuned" / "history.json").read_text())
    assert history["lr"] == pytest.approx([1e-4, 1e-6])
    card = json.loads((var_dir / "tuned" / "card.json").read_text())
    assert base.sha256 in card["hyperparameters"]["warm_start"]
    assert "cosine" in card["hyperparameters"]["learning_rate_schedule"]
    assert card["training"]["stopped_by_time_budget"] is False


@pytest.mark.django_db
def test_init_from_refuses_a_tampered_version_and_a_changed_file(nih_folder, var_dir, tmp_path):
    call_command(
        "train_model", data=str(nih_folder), epochs=1, batch_size=16, val_fraction=0.25,
        seed=3, name="base",
    )  # fmt: skip
    base = ModelVersion.objects.get(name="base")
    with open(base.file.path, "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(CommandError, match="does not match its registry entry"):
        call_command("train_model", data=str(nih_folder), name="next", init_from="base")
    with pytest.raises(CommandError, match="neither a version nor a file"):
        call_command("train_model", data=str(nih_folder), name="next", init_from="nope")
    config = _config(nih_folder, tmp_path, "changed", epochs=1)
    config.init_from, config.init_sha256 = base.file.path, "0" * 64
    with pytest.raises(ValueError, match="the starting weights changed"):
        train(config, log=lambda _: None)


@pytest.mark.django_db
@pytest.mark.parametrize("rule", ["validation", "validation+training"])
def test_the_threshold_meets_the_target_where_the_rule_says(nih_folder, tmp_path, var_dir, rule):
    config = _config(nih_folder, tmp_path, "rule", epochs=1)
    config.threshold_rule = rule
    version = train(config, log=lambda _: None)
    card = json.loads((tmp_path / "rule" / "card.json").read_text())
    candidates = card["threshold_candidates"]
    assert set(candidates) == set(rule.split("+"))
    assert version.threshold == min(candidates.values()) == card["threshold"]
    assert ("training patients" in card["threshold_rule"]) == (rule != "validation")


@pytest.mark.django_db
def test_label_smoothing_colour_jitter_and_patience_reach_the_run_and_its_card(nih_folder, var_dir):
    call_command(
        "train_model", data=str(nih_folder), epochs=1, batch_size=16, val_fraction=0.25,
        seed=3, name="smooth", label_smoothing=0.1, colour_jitter=2.0, stop_patience=9,
        dropout=0.3,
    )  # fmt: skip
    run = var_dir / "training" / "smooth"
    config = TrainConfig.load(run)
    assert config.label_smoothing == 0.1 and config.stop_patience == 9 and config.dropout == 0.3
    assert config.augmentation["hue"] == pytest.approx(0.06) and config.augmentation["flips"]
    last = keras.models.load_model(run / "checkpoint" / "last.keras")
    assert last.loss.get_config()["label_smoothing"] == pytest.approx(0.1)
    card = json.loads((run / "card.json").read_text())
    assert "label smoothing 0.1" in card["hyperparameters"]["loss"]
    assert card["hyperparameters"]["dropout"] == 0.3
    # The best epoch is picked on the validation loss after temperature scaling, which is never
    # above the raw loss (T = 1 is among the temperatures tried).
    assert "after temperature scaling" in card["hyperparameters"]["early_stopping"]
    history = json.loads((run / "history.json").read_text())
    assert history["val_loss_calibrated"][0] <= history["val_loss"][0] + 1e-9
    assert "patience 9" in card["hyperparameters"]["early_stopping"]
    with pytest.raises(CommandError, match="colour-jitter"):
        call_command("train_model", data=str(nih_folder), name="neg", colour_jitter=-1.0)


@pytest.mark.django_db
def test_train_model_with_smears_reports_each_source_and_stage(
    nih_folder, smear_folder, var_dir, capsys
):
    train_small(
        nih_folder,
        smears=str(smear_folder),
        smear_val_fraction=0.34,
        smear_positive_repeat=3,
        name="two-sources",
    )
    run = var_dir / "training" / "two-sources"
    split = json.loads((run / "split.json").read_text())
    validation_groups = set(split["validation"]["groups"])
    assert {"field:SYN0004.JPG", "field:SYN0005.JPG"} <= validation_groups
    assert not {g for g in split["train"]["groups"] if g.startswith("field:")} & validation_groups
    version = ModelVersion.objects.get(name="two-sources")
    per_source = version.metrics["validation"]["per_source"]
    assert set(per_source) == {"nih", "smear"}
    smear = per_source["smear"]
    assert smear["n_groups"] == 2 and smear["n_parasitized"] == 4  # two ring cells per field
    assert smear["per_stage"]["ring"]["n"] == 4
    assert smear["parasitemia"]["fields"] == 2
    assert "smear: n=" in capsys.readouterr().out


@pytest.mark.django_db
def test_a_source_the_version_does_not_hold_on_stays_out_of_the_domain_reference(
    nih_folder, smear_folder, var_dir, capsys
):
    """The smear fields were trained on, but their figures miss the criteria: the guard's
    reference leaves them out (and says why), so their stain stays refused."""
    common = dict(smear_val_fraction=0.34, smear_positive_repeat=3)
    train_small(
        nih_folder,
        smears=str(smear_folder),
        name="strict",
        accept_sensitivity=0.0,
        accept_specificity=0.0,
        accept_parasitemia_error=-1.0,  # no field can meet it
        **common,
    )
    strict = ModelVersion.objects.get(name="strict")
    reference = strict.quality_reference["domain"]
    assert reference["group_names"] and not any(
        g.startswith("field:") for g in reference["group_names"]
    )
    assert set(reference["group_sources"]) == {"nih"}
    assert "parasitemia error" in reference["not_validated"]["smear"][0]
    judged = strict.metrics["validation"]["validated_sources"]
    assert judged["nih"] == {"validated": True, "reasons": []}
    assert judged["smear"]["validated"] is False
    assert "smear is not validated" in capsys.readouterr().out
    card = (var_dir / "training" / "strict" / "card.md").read_text()
    assert "| smear |" in card and "refused: parasitemia error" in card
    assert "| nih |" in card and "| validated |" in card

    train_small(
        nih_folder,
        smears=str(smear_folder),
        name="lenient",
        accept_sensitivity=0.0,
        accept_specificity=0.0,
        accept_parasitemia_error=100.0,
        **common,
    )
    reference = ModelVersion.objects.get(name="lenient").quality_reference["domain"]
    assert {"nih", "smear"} == set(reference["group_sources"])
    assert reference["not_validated"] == {}


@pytest.mark.django_db
def test_a_version_that_holds_on_no_source_refuses_every_group(
    nih_folder, smear_folder, var_dir, capsys
):
    from classifier import domain

    train_small(
        nih_folder,
        smears=str(smear_folder),
        name="nowhere",
        smear_val_fraction=0.34,
        accept_sensitivity=2.0,  # no source can meet it
    )
    reference = ModelVersion.objects.get(name="nowhere").quality_reference["domain"]
    assert reference["validated"] is False
    assert set(reference["not_validated"]) == {"nih", "smear"}
    assert "refuses every group" in capsys.readouterr().out
    # Even a group the reference was built on is refused, with the reason.
    vectors = np.zeros((12, len(reference["descriptor_keys"])))
    vectors[:] = reference["group_descriptors"][0]
    result = domain.check_vectors(vectors, reference)
    assert result.flagged and "none of the data" in result.reason
