"""What the training commands share."""

from django.core.management.base import BaseCommand


class ModelVersionCommand(BaseCommand):
    """A command whose --version names a model version: Django's own --version (its release)
    gives way to it."""

    def create_parser(self, prog_name, subcommand, **kwargs):
        kwargs.setdefault("conflict_handler", "resolve")
        return super().create_parser(prog_name, subcommand, **kwargs)
