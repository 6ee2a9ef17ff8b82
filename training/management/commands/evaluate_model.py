"""manage.py evaluate_model --data DIR [--version V] [--json]: metrics with patient-bootstrap CIs."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from classifier.registry import ModelFileError


class Command(BaseCommand):
    help = (
        "Evaluate a registered model version (default: the active one) on an NIH-layout folder "
        "at its stored threshold and temperature; 95% CIs by bootstrap over patients."
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        # Django's own --version (print Django's version) gives way to ours (the model version).
        kwargs.setdefault("conflict_handler", "resolve")
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("--data", required=True, help="folder with Parasitized/, Uninfected/")
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

        try:
            version = resolve_version(options["model_version"])
            result = evaluate_version(version, options["data"], options["reps"], options["seed"])
        except (EvaluationError, ModelFileError, FileNotFoundError) as exc:
            raise CommandError(str(exc)) from exc
        for line in format_report(result):
            self.stdout.write(line)
        if options["json"]:
            self.stdout.write(json.dumps(result, allow_nan=False))
