"""manage.py evaluate_detector --data DIR [--version V] [--split all|validation] [--json]."""

from __future__ import annotations

import json

from django.core.management.base import CommandError

from classifier.registry import ModelFileError, active_version
from training.management.base import ModelVersionCommand


class Command(ModelVersionCommand):
    help = (
        "Evaluate a cell detector version (default: the active one) on annotated field "
        "photographs (IML layout): precision and recall at IoU 0.5, count error per field "
        "(cells cut by the edge excluded), seconds per field."
    )

    def add_arguments(self, parser):
        parser.add_argument("--data", required=True, help="folder with annotations.json, images/")
        parser.add_argument("--version", dest="model_version", help="default: the active detector")
        parser.add_argument(
            "--split",
            choices=("all", "validation"),
            default="all",
            help="validation: only the fields the version held out when it was trained",
        )
        parser.add_argument("--json", action="store_true", help="last stdout line: one JSON object")

    def handle(self, *args, **options):
        from classifier.detector import DetectorIntegrityError
        from classifier.models import ModelVersion
        from training.detector_registry import evaluate_detector_version

        versions = ModelVersion.objects.filter(kind=ModelVersion.Kind.DETECTOR)
        if options["model_version"]:
            version = versions.filter(name=options["model_version"]).first()
        else:
            version = active_version(ModelVersion.Kind.DETECTOR)
        if version is None:
            wanted = options["model_version"] or "active"
            raise CommandError(f"no {wanted} detector version (see list_models)")
        try:
            result = evaluate_detector_version(version, options["data"], options["split"])
        except (ModelFileError, DetectorIntegrityError, FileNotFoundError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"{version.name} on {result['images']} fields: precision {result['precision']}, "
            f"recall {result['recall']} (IoU 0.5), count error {result['count_error_pct']}%, "
            f"{result['seconds_per_field']} s/field"
        )
        if options["json"]:
            self.stdout.write(json.dumps(result))
