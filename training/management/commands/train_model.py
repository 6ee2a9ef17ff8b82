"""manage.py train_model --data DIR: train, calibrate and register a new (inactive) model version."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from training.train import TrainConfig


class Command(BaseCommand):
    help = (
        "Train the CNN on an NIH-layout folder (DIR/Parasitized, DIR/Uninfected) with a "
        "patient-grouped validation split; register the result as a new inactive ModelVersion."
    )

    def add_arguments(self, parser):
        parser.add_argument("--data", help="folder with Parasitized/ and Uninfected/ images")
        parser.add_argument("--epochs", type=int, help="maximum number of epochs (default 30)")
        parser.add_argument("--batch-size", type=int, help="default 32")
        parser.add_argument("--learning-rate", type=float, help="Adam learning rate (1e-3)")
        parser.add_argument("--val-fraction", type=float, help="share of patients (0.2)")
        parser.add_argument("--seed", type=int, help="split / initialisation seed (42)")
        parser.add_argument("--name", help="version name (slug); default cnn-<timestamp>")
        parser.add_argument("--output", help="run folder (default var/training/<name>)")
        parser.add_argument(
            "--resume",
            action="store_true",
            help="continue the run in --output (or var/training/<name>)",
        )
        parser.add_argument(
            "--include-reviewed",
            action="store_true",
            help="add every reviewer-confirmed or -overridden image with the reviewer's label",
        )
        parser.add_argument(
            "--ema-momentum",
            type=float,
            help="validate, early-stop on and ship an exponential moving average of the weights",
        )
        parser.add_argument(
            "--max-minutes", type=float, help="stop after the epoch that would overrun this"
        )

    def handle(self, *args, **options):
        from training.train import train

        config, resume = self._config(options)
        try:
            version = train(config, resume=resume, log=self._log)
        except (FileNotFoundError, FileExistsError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"registered {version.name} (inactive)"))

    def _log(self, message: str) -> None:
        self.stdout.write(message)
        self.stdout.flush()

    def _check_name(self, name: str) -> None:
        """Fail before hours of training, not after, on a name that cannot be registered."""
        from django.core.exceptions import ValidationError
        from django.core.validators import validate_slug

        from classifier.models import ModelVersion

        try:
            validate_slug(name)
        except ValidationError as exc:
            raise CommandError(
                f"--name {name!r} must be a slug (letters, digits, - and _)"
            ) from exc
        if ModelVersion.objects.filter(name=name).exists():
            raise CommandError(f"a model version named {name!r} already exists")

    def _config(self, options) -> tuple[TrainConfig, bool]:
        name = options["name"] or datetime.now().strftime("cnn-%Y%m%d-%H%M%S")
        output = Path(options["output"] or Path(settings.VAR_DIR) / "training" / name)
        overrides = {
            key: options[key]
            for key in ("epochs", "batch_size", "learning_rate", "val_fraction", "seed")
            if options[key] is not None
        }
        for key in ("max_minutes", "ema_momentum"):
            if options[key] is not None:
                overrides[key] = options[key]
        if options["resume"]:
            if not (output / "config.json").exists():
                raise CommandError(f"nothing to resume in {output} (no config.json)")
            config = TrainConfig.load(output)
            # Only the stopping limits may change on resume; the data and split must not.
            for key in ("epochs", "max_minutes"):
                if key in overrides:
                    setattr(config, key, overrides[key])
            return config, True
        if not options["data"]:
            raise CommandError("--data is required")
        self._check_name(name)
        config = TrainConfig(
            data=str(Path(options["data"]).resolve()),
            name=name,
            output=str(output),
            include_reviewed=options["include_reviewed"],
            **overrides,
        )
        return config, False
