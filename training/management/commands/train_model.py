"""manage.py train_model --data DIR: train, calibrate and register a new (inactive) model version."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from training.calibration import THRESHOLD_RULES
from training.pipeline import Augmentation
from training.run import LR_SCHEDULES, TrainConfig
from training.sources import ACCEPTANCE

# Options copied as given into TrainConfig fields of the same name.
CONFIG_OPTIONS = (
    "epochs",
    "batch_size",
    "learning_rate",
    "val_fraction",
    "seed",
    "dropout",
    "max_minutes",
    "ema_momentum",
    "lr_schedule",
    "min_lr",
    "threshold_rule",
    "stop_patience",
    "label_smoothing",
    "smear_val_fraction",
    "smear_positive_repeat",
)


class Command(BaseCommand):
    help = (
        "Train the CNN on an NIH-layout folder (DIR/Parasitized, DIR/Uninfected) with a "
        "patient-grouped validation split; register the result as a new inactive ModelVersion."
    )

    def add_arguments(self, parser):
        for add in (
            _add_run_arguments,
            _add_data_arguments,
            _add_optimiser_arguments,
            _add_augmentation_and_stopping_arguments,
            _add_calibration_and_start_arguments,
        ):
            add(parser)

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

    def _init_from(self, value: str, output: Path) -> dict:
        """Resolve --init-from: a version (hash-checked, copied into the run) or a file."""
        import shutil

        from classifier.hashing import sha256_of
        from classifier.models import ModelVersion
        from classifier.registry import ModelFileError, local_model_file

        version = ModelVersion.objects.filter(name=value).first()
        if version is None:
            path = Path(value)
            if not path.is_file():
                raise CommandError(f"--init-from {value!r} is neither a version nor a file")
            path = path.resolve()
            return {
                "init_from": str(path),
                "init_sha256": sha256_of(path),
                "init_note": f"the file {path.name}",
            }
        output.mkdir(parents=True, exist_ok=True)
        target = output / "init.keras"
        try:
            with local_model_file(version) as source:
                shutil.copyfile(source, target)
        except ModelFileError as exc:
            raise CommandError(str(exc)) from exc
        return {
            "init_from": str(target),
            "init_sha256": version.sha256,
            "init_note": f"version {version.name}",
        }

    def _config(self, options) -> tuple[TrainConfig, bool]:
        name = options["name"] or datetime.now().strftime("cnn-%Y%m%d-%H%M%S")
        output = Path(options["output"] or Path(settings.VAR_DIR) / "training" / name)
        overrides = {key: options[key] for key in CONFIG_OPTIONS if options[key] is not None}
        if options["resume"]:
            if not (output / "config.json").exists():
                raise CommandError(f"nothing to resume in {output} (no config.json)")
            config = TrainConfig.load(output)
            # Only the stopping limits may change on resume; the data and split must not.
            for key in ("epochs", "max_minutes", "stop_patience"):
                if key in overrides:
                    setattr(config, key, overrides[key])
            return config, True
        if not options["data"]:
            raise CommandError("--data is required")
        self._check_name(name)
        if options["init_from"]:
            overrides.update(self._init_from(options["init_from"], output))
        if options["colour_jitter"] is not None:
            try:
                overrides["augmentation"] = Augmentation.scaled(options["colour_jitter"]).as_dict()
            except ValueError as exc:
                raise CommandError(f"--colour-jitter: {exc}") from exc
        overrides["acceptance"] = {
            key: options[f"accept_{key}"] if options[f"accept_{key}"] is not None else default
            for key, default in ACCEPTANCE.items()
        }
        config = TrainConfig(
            data=str(Path(options["data"]).resolve()),
            name=name,
            output=str(output),
            include_reviewed=options["include_reviewed"],
            smears=str(Path(options["smears"]).resolve()) if options["smears"] else None,
            **overrides,
        )
        return config, False


def _add_run_arguments(parser) -> None:
    """The data folder, the basic fit options, the version's name and its run folder."""
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


def _add_data_arguments(parser) -> None:
    """More training data: reviewed images and an annotated smear folder."""
    parser.add_argument(
        "--include-reviewed",
        action="store_true",
        help="add every reviewer-confirmed or -overridden image with the reviewer's label",
    )
    parser.add_argument(
        "--smears",
        help="also train on the cells of an annotated smear folder (annotations.json + "
        "images/, IML layout), cut from their boxes as the field path cuts detected cells",
    )
    parser.add_argument(
        "--smear-val-fraction",
        type=float,
        help="share of the smear fields (the last ones by name) held out to validate (0.15)",
    )
    parser.add_argument(
        "--smear-positive-repeat",
        type=int,
        help="times each parasitized smear cell is seen per epoch (1; they are rare)",
    )


def _add_optimiser_arguments(parser) -> None:
    """Weight averaging, time budget, learning-rate schedule, dropout and label smoothing."""
    parser.add_argument(
        "--ema-momentum",
        type=float,
        help="validate, early-stop on and ship an exponential moving average of the weights",
    )
    parser.add_argument(
        "--max-minutes", type=float, help="stop after the epoch that would overrun this"
    )
    parser.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        help="plateau (default): halve the LR when validation loss stalls; cosine: decay "
        "it from --learning-rate to --min-lr over --epochs",
    )
    parser.add_argument("--min-lr", type=float, help="lowest learning rate (1e-5)")
    parser.add_argument(
        "--dropout", type=float, help="dropout rate before and after Dense(128) (0.5)"
    )
    parser.add_argument(
        "--label-smoothing",
        type=float,
        help="train towards s/2 and 1 - s/2 instead of 0 and 1 (0; e.g. 0.1 for noisy labels)",
    )


def _add_augmentation_and_stopping_arguments(parser) -> None:
    """Colour augmentation and early stopping."""
    parser.add_argument(
        "--colour-jitter",
        type=float,
        help="scale the brightness, contrast, saturation and hue augmentation (1.0)",
    )
    parser.add_argument(
        "--stop-patience",
        type=int,
        help="epochs without a lower validation loss before stopping early (6)",
    )


def _add_calibration_and_start_arguments(parser) -> None:
    """The threshold rule and the warm start."""
    parser.add_argument(
        "--threshold-rule",
        choices=THRESHOLD_RULES,
        help="where the sensitivity target (0.97) must be met when choosing the operating "
        "threshold (default validation+training: the lower of the two thresholds)",
    )
    for key, what in (
        ("sensitivity", "validation sensitivity"),
        ("specificity", "validation specificity"),
        ("parasitemia-error", "largest mean per-field parasitemia error, in points,"),
    ):
        parser.add_argument(
            f"--accept-{key}",
            type=float,
            help=f"{what} a source (NIH patients, smear fields, reviewed cases) needs to enter "
            f"the domain guard's reference ({ACCEPTANCE[key.replace('-', '_')]}); a source "
            "that misses it stays refused by the guard",
        )
    parser.add_argument(
        "--init-from",
        help="warm start: a registered version's name or a .keras file of this architecture "
        "(fine-tuning, e.g. on reviewed images of a new site)",
    )
