"""Celery tasks: thin wrappers that take ids (JSON only) and call a service.

Acknowledged late and rejected on worker loss (settings), so a worker killed mid-batch loses
nothing: the message is delivered again and the service computes only what is still missing.
TensorFlow is imported inside the service call, never when this module is imported.
"""

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError

from cases.analysis.services import TransientAnalysisError, images_mark_failed
from cases.analysis.services import analyse_images as analyse_images_service

logger = logging.getLogger(__name__)

TRANSIENT = (TransientAnalysisError, DatabaseError, OSError)


@shared_task(
    # Pinned: messages already in a broker name the task by its old module path.
    name="cases.tasks.analyse_images",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT,
    retry_backoff=2,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=5,
)
def analyse_images(self, image_ids: list[int]) -> dict:
    """Analyse a batch of images by id."""
    from classifier.detector import DetectorIntegrityError
    from classifier.engine import ModelIntegrityError
    from classifier.runtime import NoActiveModelError

    try:
        report = analyse_images_service(image_ids=[int(i) for i in image_ids])
    except (ModelIntegrityError, DetectorIntegrityError, NoActiveModelError) as exc:
        # Permanent until an admin acts: fail these images with the reason, mark none done.
        logger.error("Analysis refused: %s", exc)
        images_mark_failed(image_ids=image_ids, reason=str(exc))
        return {"failed": image_ids, "reason": str(exc)}
    except SoftTimeLimitExceeded:
        images_mark_failed(image_ids=image_ids, reason="analysis took longer than the time limit")
        raise
    except TRANSIENT as exc:
        if self.request.retries >= self.max_retries:
            images_mark_failed(image_ids=image_ids, reason=f"analysis kept failing: {exc}")
        raise
    return {
        "done": len(report.done),
        "failed": len(report.failed),
        "skipped": len(report.skipped),
        "segmented": report.segmented,
    }
