"""Register the shipped models (classifier/default_model/: the cell classifier,
classifier/default_detector/: the cell detector) and activate each on a fresh install."""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from cases.analysis.model_versions import model_activate
from classifier.hashing import sha256_of
from classifier.models import ModelVersion
from classifier.registry import active_version, register_version

SHIPPED = Path(__file__).resolve().parents[3] / "classifier"
DEFAULT_DIRS = (SHIPPED / "default_model", SHIPPED / "default_detector")


class Command(BaseCommand):
    help = (
        "Register the shipped default models (classifier and cell detector) if they are not "
        "registered, and activate each when no version of its kind is active. Safe on every start."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--dir", action="append", help="a folder with manifest.json (default: both shipped)"
        )

    def handle(self, *args, **options) -> None:
        dirs = options["dir"] or DEFAULT_DIRS
        for folder in [Path(d) for d in ([dirs] if isinstance(dirs, str) else dirs)]:
            self.install(folder)

    def install(self, folder: Path) -> None:
        manifest_path = folder / "manifest.json"
        if not manifest_path.exists():
            raise CommandError(f"{manifest_path} not found: no default model is shipped there.")
        manifest = json.loads(manifest_path.read_text())
        kind = manifest.get("kind", ModelVersion.Kind.CLASSIFIER)
        model_path = folder / manifest.get("file", "model.keras")
        actual = sha256_of(model_path)
        if actual != manifest["sha256"]:
            raise CommandError(
                f"{model_path} has SHA-256 {actual} but its manifest says {manifest['sha256']}: "
                "refusing to register it."
            )
        version = ModelVersion.objects.filter(name=manifest["name"]).first()
        if version is None:
            card_path = folder / "card.json"
            version = register_version(
                name=manifest["name"],
                kind=kind,
                model_path=model_path,
                threshold=manifest["threshold"],
                temperature=manifest.get("temperature", 1.0),
                metrics=manifest.get("metrics", {}),
                card=json.loads(card_path.read_text()) if card_path.exists() else {},
                quality_reference=manifest.get("quality_reference", {}),
                notes="Shipped default model.",
            )
            self.stdout.write(f"Registered the shipped {kind} as version {version.name}.")
        elif version.sha256 != actual or version.kind != kind:
            raise CommandError(
                f"Version {version.name} is registered with another file (sha256 "
                f"{version.sha256[:12]}…, kind {version.kind}); rename the shipped model's "
                "version in its manifest."
            )
        active = active_version(kind)
        if active is None:
            active = model_activate(version=version, by=None)
            self.stdout.write(f"Activated {kind} version {version.name}.")
        self.stdout.write(f"Active {kind}: {active.name}")
