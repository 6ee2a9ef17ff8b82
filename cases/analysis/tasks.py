"""Celery tasks: thin wrappers that take ids (JSON only) and call a service.

Acknowledged late and rejected on worker loss (settings), so a worker killed mid-batch loses
nothing: the message is delivered again and the service computes only what is still missing.
Transient faults (storage, database) are retried with a back-off of up to
ANALYSIS_RETRY_BACKOFF_MAX seconds, ANALYSIS_MAX_RETRIES times (about half an hour in all), and
nothing done while the database is down may raise out of the task: whatever is left pending
is picked up by the periodic sweep (analysis_sweep, run by Celery beat).
TensorFlow is imported inside the service call, never when this module is imported.
"""

import logging
import random
from datetime import timedelta

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from cases.analysis.queue import analysis_sweep as analysis_sweep_service
from cases.analysis.services import (
    TRANSIENT,
    images_analyse,
    images_mark_failed,
    images_release,
    storage_error_text,
)

logger = logging.getLogger(__name__)


def _fail_or_leave(image_ids: list[int], reason: str) -> None:
    """Fail the images; with the database down, leave them pending for the sweep."""
    try:
        images_mark_failed(image_ids=image_ids, reason=reason)
    except DatabaseError:
        logger.warning("Cannot mark %d images failed; the sweep will retry them", len(image_ids))


def _readable(exc: Exception) -> str:
    return storage_error_text(exc) if isinstance(exc, OSError) else str(exc)


def _backoff(retries: int) -> int:
    """2, 4, 8 ... seconds up to ANALYSIS_RETRY_BACKOFF_MAX, with jitter (half to full)."""
    ceiling = min(settings.ANALYSIS_RETRY_BACKOFF_MAX, 2 ** (retries + 1))
    return max(1, round(ceiling * random.uniform(0.5, 1.0)))


@shared_task(
    # Pinned: messages already in a broker name the task by its old module path.
    name="cases.tasks.analyse_images",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=settings.ANALYSIS_MAX_RETRIES,
)
def analyse_images(self, image_ids: list[int]) -> dict:
    """Analyse a batch of images by id."""
    from classifier.detector import DetectorIntegrityError
    from classifier.engine import ModelIntegrityError
    from classifier.runtime import NoActiveModelError

    image_ids = [int(i) for i in image_ids]
    try:
        report = images_analyse(image_ids=image_ids)
    except (ModelIntegrityError, DetectorIntegrityError, NoActiveModelError) as exc:
        # Permanent until an admin acts: fail these images with the reason, mark none done.
        logger.error("Analysis refused: %s", exc)
        _fail_or_leave(image_ids, str(exc))
        return {"failed": image_ids, "reason": str(exc)}
    except SoftTimeLimitExceeded:
        _fail_or_leave(image_ids, "analysis took longer than the time limit")
        raise
    except TRANSIENT as exc:
        if self.request.retries >= self.max_retries:
            _fail_or_leave(image_ids, f"analysis kept failing: {_readable(exc)}")
            raise
        countdown = _backoff(self.request.retries)
        logger.warning("Analysis will retry in %d s: %s", countdown, _readable(exc))
        try:  # queued again, due when the retry is, so that the sweep does not send it too
            images_release(image_ids=image_ids, due=timezone.now() + timedelta(seconds=countdown))
        except DatabaseError:  # still processing: the sweep re-sends it if the retry never comes
            logger.info("Cannot release %d images before the retry", len(image_ids))
        raise self.retry(exc=exc, countdown=countdown) from exc
    return {
        "done": len(report.done),
        "failed": len(report.failed),
        "skipped": len(report.skipped),
        "segmented": report.segmented,
    }


@shared_task(name="cases.analysis.sweep", ignore_result=True)
def analysis_sweep() -> dict:
    """Re-send images left without a live message (Celery beat, every ANALYSIS_SWEEP_INTERVAL).

    With the database down there is nothing to sweep: one warning line per run, not a
    traceback, and the next run tries again."""
    try:
        report = analysis_sweep_service()
    except DatabaseError as exc:
        logger.warning("Analysis sweep skipped, the database is unavailable: %s", exc)
        return {"skipped": "database unavailable"}
    return {
        "never_sent": report.never_sent,
        "lost": report.lost,
        "stalled": report.stalled,
        "given_up": len(report.given_up),
    }
