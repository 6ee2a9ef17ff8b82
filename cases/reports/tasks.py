"""Celery task that renders the report of a large case (ids only, JSON arguments)."""

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError

from cases.reports.exports import report_export_generate, report_export_mark_failed

logger = logging.getLogger(__name__)

TRANSIENT = (DatabaseError, OSError)


@shared_task(
    # Pinned: messages already in a broker name the task by its old module path.
    name="cases.report_tasks.generate_report_export",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT,
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=3,
)
def generate_report_export(self, export_id: int) -> dict:
    """Render and store one ReportExport; a redelivered message finds it done and stops."""
    try:
        export = report_export_generate(export_id=int(export_id))
    except SoftTimeLimitExceeded:
        report_export_mark_failed(export_id=export_id, reason="took longer than the time limit")
        raise
    except TRANSIENT as exc:
        if self.request.retries >= self.max_retries:
            report_export_mark_failed(export_id=export_id, reason=f"kept failing: {exc}")
        raise
    except Exception as exc:  # a rendering bug: record it on the export, then let Celery log it
        logger.exception("report export %s failed", export_id)
        report_export_mark_failed(export_id=export_id, reason=f"{type(exc).__name__}: {exc}")
        raise
    return {"export": export.pk, "status": export.status}
