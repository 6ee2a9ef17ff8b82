from django.core.management.base import BaseCommand, CommandError

from cases.analysis.model_versions import model_activate
from classifier.models import ModelVersion
from classifier.registry import ModelFileError, active_version, local_model_file


class Command(BaseCommand):
    help = "Make model version NAME the one active version (audited). Rollback: activate the previous one."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="the version's name (see list_models)")

    def handle(self, *args, **options) -> None:
        version = ModelVersion.objects.filter(name=options["name"]).first()
        if version is None:
            names = ", ".join(ModelVersion.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"No model version named {options['name']!r} (known: {names}).")
        try:
            with local_model_file(version):
                pass  # the file is there and matches its SHA-256
        except ModelFileError as exc:
            raise CommandError(f"Refusing to activate: {exc}") from exc
        previous = active_version(version.kind)
        model_activate(version=version, by=None)
        before = previous.name if previous else "none"
        label = "cell detector" if version.is_detector else "model"
        self.stdout.write(self.style.SUCCESS(f"Active {label}: {version.name} (was {before})."))
