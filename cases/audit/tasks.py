"""Periodic audit tasks, scheduled by Celery beat (CELERY_BEAT_SCHEDULE in malariaweb.settings)."""

from celery import shared_task

from cases.audit.checkpoints import checkpoint_write
from cases.audit.login_guard import login_failures_prune


@shared_task(name="cases.audit.write_checkpoint", ignore_result=True)
def audit_checkpoint_write() -> str:
    """Write a signed checkpoint of the trail's head to storage (when it has grown)."""
    checkpoint = checkpoint_write()
    return checkpoint.name if checkpoint else ""


@shared_task(name="cases.audit.prune_login_failures", ignore_result=True)
def audit_login_failures_prune() -> int:
    """Forget failed log-ins past the lockout window; unknown names get one summary event."""
    return login_failures_prune()
