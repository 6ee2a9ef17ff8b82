"""manage.py export_model --version V [--dest DIR]: ship a version as the default of its kind
(classifier/default_model/ for a classifier, classifier/default_detector/ for a detector)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

from classifier.models import ModelVersion
from classifier.registry import ModelFileError
from training.management.base import ModelVersionCommand


class Command(ModelVersionCommand):
    help = "Write model.keras, card.json, card.md and manifest.json of a version into a folder."

    def add_arguments(self, parser):
        parser.add_argument("--version", dest="model_version", required=True)
        parser.add_argument("--note", default="", help="a note for the exported card")
        parser.add_argument("--dest", help="default: the shipped folder of the version's kind")

    def handle(self, *args, **options):
        from training.export import export_version

        version = ModelVersion.objects.filter(name=options["model_version"]).first()
        if version is None:
            raise CommandError(f"no model version named {options['model_version']!r}")
        folder = "default_detector" if version.is_detector else "default_model"
        dest = Path(options["dest"] or Path(settings.BASE_DIR) / "classifier" / folder)
        try:
            manifest = export_version(version, dest, options["note"])
        except (ModelFileError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"exported {manifest['name']} (sha256 {manifest['sha256']}) to {dest}")
