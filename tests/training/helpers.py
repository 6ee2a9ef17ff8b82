"""Helpers of the training tests: train_model with the suite's small settings, and the JSON line
a command prints last."""

import json
from pathlib import Path

from django.core.management import call_command

# Small and reproducible: batches of 16, a quarter of the patients held out, one seed.
SMALL = {"batch_size": 16, "val_fraction": 0.25, "seed": 3}


def train_small(nih_folder: Path, *, name: str, epochs: int = 1, **options) -> None:
    """`manage.py train_model` on `nih_folder` with the SMALL settings and `options`."""
    call_command("train_model", data=str(nih_folder), epochs=epochs, name=name, **SMALL, **options)


def json_line(capsys) -> dict:
    """The last line a command printed, read as JSON (its --json result)."""
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])
