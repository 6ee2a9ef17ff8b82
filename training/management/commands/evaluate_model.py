"""manage.py evaluate_model --data DIR | --reviewed [--site CODE] [--version V] [--split S]
[--json]: metrics with group-bootstrap CIs (patients of an NIH folder, fields of a smear folder,
cases of reviewed cells) and the domain guard's out-of-domain fraction."""

from __future__ import annotations

import json

from django.core.management.base import CommandError

from classifier.registry import ModelFileError
from training.management.base import ModelVersionCommand


class Command(ModelVersionCommand):
    help = (
        "Evaluate a registered model version (default: the active one) on an NIH-layout folder "
        "or an annotated smear folder at its stored threshold and temperature; 95% CIs by "
        "bootstrap over patients (NIH) or fields (smears); per-stage sensitivity on smears; "
        "the share of groups the domain guard flags."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--data",
            help="folder with Parasitized/, Uninfected/ (NIH) or annotations.json, images/ (smears)",
        )
        parser.add_argument(
            "--reviewed",
            action="store_true",
            help="evaluate on the cells reviewers confirmed or overrode (their label is the truth; "
            "grouped by case) instead of a folder",
        )
        parser.add_argument("--site", help="with --reviewed: only that site's cells (its code)")
        parser.add_argument(
            "--split",
            choices=("all", "training", "validation"),
            default="all",
            help="evaluate only the held-out groups (validation) or the training ones: NIH by "
            "patient as train_model splits (fraction 0.2, seed 42), smears by field as "
            "training.smears.split_fields (fraction 0.15); default all",
        )
        parser.add_argument(
            "--val-fraction", type=float, help="the split's validation fraction (see --split)"
        )
        parser.add_argument(
            "--version", dest="model_version", help="version name (default: active)"
        )
        parser.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
        parser.add_argument("--reps", type=int, default=1000, help="bootstrap replicates (1000)")
        parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (0)")

    def handle(self, *args, **options):
        from training.evaluate import (
            EvaluationError,
            evaluate_version,
            format_report,
            resolve_version,
        )

        if bool(options["data"]) == bool(options["reviewed"]):
            raise CommandError("give either --data DIR or --reviewed [--site CODE]")
        try:
            version = resolve_version(options["model_version"])
            result = evaluate_version(
                version,
                options["data"],
                options["reps"],
                options["seed"],
                split=options["split"],
                val_fraction=options["val_fraction"],
                reviewed_site=options["site"],
            )
        except (EvaluationError, ModelFileError, FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        for line in format_report(result):
            self.stdout.write(line)
        if options["json"]:
            self.stdout.write(json.dumps(result, allow_nan=False))
