"""train_model end to end on synthetic cells: split, artefacts, registration and resume."""

import json

import keras
import pytest
from django.core.management import call_command

from classifier.models import ModelVersion
from training.train import TrainConfig, train


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
        batch_size=16,
        val_fraction=0.25,
        seed=3,
        bootstrap_reps=50,
    )


@pytest.mark.django_db
def test_train_model_writes_card_plots_and_an_inactive_version(nih_folder, var_dir, capsys):
    call_command(
        "train_model",
        data=str(nih_folder),
        epochs=2,
        batch_size=16,
        val_fraction=0.25,
        seed=3,
        name="synthetic-v1",
    )
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
