"""manage.py domain_reference --version V --data DIR [--data DIR2]: the domain guard's reference."""

from __future__ import annotations

from django.core.management.base import CommandError

from classifier.registry import ModelFileError
from training.management.base import ModelVersionCommand


class Command(ModelVersionCommand):
    help = (
        "Compute and store the domain guard's reference of a model version from the data it was "
        "trained and validated on (NIH folders grouped by patient, smear folders by field): the "
        "limit flags at most 5% of those groups."
    )

    def add_arguments(self, parser):
        parser.add_argument("--version", dest="model_version", help="version (default: active)")
        parser.add_argument(
            "--data", action="append", required=True, help="NIH or smear folder (repeatable)"
        )
        parser.add_argument(
            "--split",
            choices=("all", "training", "validation"),
            default="all",
            help="which groups of each folder (as evaluate_model --split); default all",
        )
        parser.add_argument("--per-group", type=int, default=60, help="cells per group (60)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--include-unvalidated",
            action="store_true",
            help="keep a folder on which the version misses the acceptance criteria (sensitivity "
            "0.85, specificity 0.95, parasitemia error 0.5 points per field); by default such a "
            "folder stays out, so that the guard refuses its stain",
        )

    def handle(self, *args, **options):
        from training.domain_reference import domain_reference_compute
        from training.evaluate import EvaluationError, resolve_version

        try:
            version = resolve_version(options["model_version"])
            reference = domain_reference_compute(
                version=version,
                folders=options["data"],
                split=options["split"],
                per_group=options["per_group"],
                seed=options["seed"],
                acceptance={} if options["include_unvalidated"] else None,
            )
        except (EvaluationError, ModelFileError, FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"stored the domain reference of {version.name}: {len(reference['group_names'])} "
            f"groups, limit {reference['limit']:.3f}, flagged on themselves (leave-one-out): "
            + ", ".join(
                f"{source} {row['flagged_leave_one_out']:.3f} of {row['groups']}"
                for source, row in reference["calibration"].items()
            )
        )
        for folder, reasons in reference.get("not_validated", {}).items():
            self.stdout.write(f"left out {folder}: the version misses {', '.join(reasons)}")
