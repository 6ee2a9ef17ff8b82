from django.apps import AppConfig


class CasesConfig(AppConfig):
    name = "cases"
    verbose_name = "Cases"

    def ready(self) -> None:
        # Celery's autodiscovery finds only cases.tasks; the report task lives in its own module.
        from cases import report_tasks  # noqa: F401
