"""Register the model shipped in classifier/default_model/ and activate it on a fresh install."""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from cases.services import model_activate
from classifier.models import ModelVersion
from classifier.registry import register_version, sha256_of

DEFAULT_DIR = Path(__file__).resolve().parents[3] / "classifier" / "default_model"


class Command(BaseCommand):
    help = (
        "Register the shipped default model (classifier/default_model/) if it is not registered, "
        "and activate it when no version is active. Safe to run on every start."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dir", default=str(DEFAULT_DIR), help="folder with manifest.json")

    def handle(self, *args, **options) -> None:
        folder = Path(options["dir"])
        manifest_path = folder / "manifest.json"
        if not manifest_path.exists():
            raise CommandError(f"{manifest_path} not found: no default model is shipped.")
        manifest = json.loads(manifest_path.read_text())
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
                model_path=model_path,
                threshold=manifest["threshold"],
                temperature=manifest.get("temperature", 1.0),
                metrics=manifest.get("metrics", {}),
                card=json.loads(card_path.read_text()) if card_path.exists() else {},
                quality_reference=manifest.get("quality_reference", {}),
                notes="Shipped default model.",
            )
            self.stdout.write(f"Registered the shipped model as version {version.name}.")
        elif version.sha256 != actual:
            raise CommandError(
                f"Version {version.name} is registered with another file (sha256 "
                f"{version.sha256[:12]}…); rename the shipped model's version in its manifest."
            )
        if not ModelVersion.objects.filter(is_active=True).exists():
            model_activate(version=version, by=None)
            self.stdout.write(f"Activated model version {version.name}.")
        active = ModelVersion.objects.get(is_active=True)
        self.stdout.write(f"Active model: {active.name}")
