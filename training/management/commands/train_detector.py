"""manage.py train_detector --data DIR: train the cell detector and register it (inactive)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from training.detector import DetectorConfig

OPTIONS = (
    "epochs",
    "windows_per_field",
    "batch_size",
    "learning_rate",
    "min_lr",
    "val_fraction",
    "seed",
    "max_minutes",
    "colour_jitter",
)


class Command(BaseCommand):
    help = (
        "Train the cell detector on annotated field photographs (IML layout: DIR/annotations.json "
        "and DIR/images/); the last --val-fraction of the fields by name is held out to validate "
        "and to choose the threshold. Registers a new inactive detector version with its card."
    )

    def add_arguments(self, parser):
        parser.add_argument("--data", help="folder with annotations.json and images/")
        parser.add_argument("--name", help="version name (slug); default detector-<timestamp>")
        parser.add_argument("--output", help="run folder (default var/training/<name>)")
        parser.add_argument("--resume", action="store_true", help="continue the run in --output")
        parser.add_argument("--epochs", type=int, help="default 30")
        parser.add_argument(
            "--windows-per-field", type=int, help="training windows per field and epoch (8)"
        )
        parser.add_argument("--batch-size", type=int, help="default 16")
        parser.add_argument("--learning-rate", type=float, help="start of the cosine decay (2e-3)")
        parser.add_argument("--min-lr", type=float, help="end of the cosine decay (5e-5)")
        parser.add_argument("--val-fraction", type=float, help="share of fields held out (0.15)")
        parser.add_argument("--seed", type=int, help="default 42")
        parser.add_argument(
            "--max-minutes", type=float, help="stop after the epoch that overruns this"
        )
        parser.add_argument(
            "--colour-jitter", type=float, help="scale the stain/camera augmentation (1.0)"
        )
        parser.add_argument(
            "--include-reviewed",
            action="store_true",
            help="also train on every field whose cells reviewers corrected (added or removed "
            "cells), with the corrected boxes; those fields always train, never validate",
        )

    def handle(self, *args, **options):
        from classifier.models import ModelVersion
        from training.detector import train_detector
        from training.detector_registry import register_detector, reviewed_field_folder

        name = options["name"] or f"detector-{datetime.now():%Y%m%d-%H%M%S}"
        if not options["resume"] and ModelVersion.objects.filter(name=name).exists():
            raise CommandError(f"a model version named {name!r} already exists")
        output = Path(options["output"] or Path(settings.VAR_DIR) / "training" / name)
        if not options["resume"] and not options["data"]:
            raise CommandError("--data is required (a folder with annotations.json and images/)")
        data = options["data"] or ""
        if options["include_reviewed"] and not options["resume"]:
            data = str(reviewed_field_folder(output / "data", options["data"], log=self._log))
        values = {k: options[k] for k in OPTIONS if options.get(k) is not None}
        config = DetectorConfig(data=data, name=name, output=str(output), **values)
        try:
            result = train_detector(config, resume=options["resume"], log=self._log)
        except (FileNotFoundError, FileExistsError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        version = register_detector(config, result)
        self.stdout.write(self.style.SUCCESS(f"registered detector {version.name} (inactive)"))

    def _log(self, message: str) -> None:
        self.stdout.write(message)
        self.stdout.flush()
