from django.apps import AppConfig


class CasesConfig(AppConfig):
    name = "cases"
    verbose_name = "Cases"

    def ready(self) -> None:
        # Celery's autodiscovery looks only for cases.tasks; the tasks live with their jobs.
        from cases.analysis import tasks as analysis_tasks  # noqa: F401
        from cases.audit import checks as audit_checks  # noqa: F401
        from cases.audit import tasks as audit_tasks  # noqa: F401
        from cases.reports import tasks as report_tasks  # noqa: F401
