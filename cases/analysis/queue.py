"""Sending images to the workers: the one place that publishes analysis messages, and the sweep
that re-sends what a lost message, a dead worker or an unreachable broker left behind.

Every send is recorded on the image (`enqueued_at`), so that a recovery path re-sends only images
without a recent message: the start-up re-send and the periodic sweep first stamp the rows they
take (an atomic update under `select_for_update(skip_locked=True)`), then publish outside the
transaction, so two workers never re-send one image twice. A broker that refuses a message never
fails the caller: the images stay queued, unstamped, and the next sweep sends them.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import current_app, signature
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from cases.analysis.services import (
    failed_images_remove_leftovers,
    images_mark_failed,
    poison_reason,
)
from cases.models import Image

logger = logging.getLogger(__name__)
# Published by name (cases.analysis.tasks imports this module for the sweep task).
analyse_images = signature("cases.tasks.analyse_images")
# Rows stamped per transaction by a recovery pass (keeps IN lists and locks short).
CHUNK = 2000


def _publish(image_ids: list[int]) -> bool:
    """Send stamped images in batches; on a broker failure unstamp the rest and return False."""
    size = settings.ANALYSIS_BATCH_SIZE
    for start in range(0, len(image_ids), size):
        try:
            analyse_images.delay(image_ids[start : start + size])
        except Exception:  # kombu/redis OperationalError, refused connection, DNS failure, ...
            # The images are stored and queued; the sweep sends them once the broker is back.
            logger.warning(
                "Broker unavailable: %d images stay queued for the sweep",
                len(image_ids) - start,
                exc_info=True,
            )
            Image.objects.filter(pk__in=image_ids[start:]).update(enqueued_at=None)
            return False
    return True


def analysis_enqueue(image_ids: list[int]) -> None:
    """Send image ids to the workers in batches; call via transaction.on_commit. Never raises
    for an unreachable broker: the upload is stored, its images stay queued for the sweep."""
    Image.objects.filter(pk__in=image_ids).update(enqueued_at=timezone.now())
    _publish(list(image_ids))


def _stamp(candidates: Q, *, requeue: bool = False) -> list[int]:
    """Take up to CHUNK matching pending images for this process and mark them sent now.

    Rows another process is stamping are skipped (skip_locked); rows it stamped a moment ago no
    longer match `candidates`, which always limits `enqueued_at` or `claimed_at` to the past."""
    with transaction.atomic():
        ids = list(
            Image.objects.select_for_update(skip_locked=True)
            .filter(candidates, status__in=Image.PENDING)
            .order_by("pk")
            .values_list("pk", flat=True)[:CHUNK]
        )
        changes: dict = {"enqueued_at": timezone.now()}
        if requeue:
            changes.update(status=Image.Status.QUEUED, claimed_at=None)
        Image.objects.filter(pk__in=ids).update(**changes)
    return ids


def _resend(candidates: Q, *, requeue: bool = False) -> int:
    sent = 0
    while ids := _stamp(candidates, requeue=requeue):
        if not _publish(ids):
            break
        sent += len(ids)
        if len(ids) < CHUNK:
            break
    return sent


def analysis_requeue_pending(*, sent_before: datetime | None = None) -> int:
    """Send every image still queued or processing that was not sent since `sent_before` (a
    worker's start) to the workers again; returns the count.

    Run when a worker starts: a broker without acknowledgements (the embedded filesystem one) or
    a restarted Redis without persistence loses messages, and images must not wait forever. Two
    workers starting together send each image once: the first stamps it, the second skips it. A
    duplicate message is harmless: the analysis computes only what is still missing.
    """
    cutoff = sent_before or timezone.now()
    return _resend(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=cutoff))


@dataclass
class SweepReport:
    never_sent: int = 0
    lost: int = 0
    stalled: int = 0
    given_up: list[int] = field(default_factory=list)


def broker_queue_depth() -> int | None:
    """Messages waiting in the analysis queue; None when the broker cannot tell (or is down)."""
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    try:
        with current_app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1)
            return conn.default_channel._size(queue)
    except Exception:
        logger.info("Cannot read the depth of queue %s", queue, exc_info=True)
        return None


def _give_up_on_poison(stale: Q) -> list[int]:
    """Images that stopped a worker ANALYSIS_MAX_ATTEMPTS times fail instead of going back."""
    limit = settings.ANALYSIS_MAX_ATTEMPTS
    ids = list(
        Image.objects.filter(stale, status=Image.Status.PROCESSING, attempts__gte=limit)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if not ids:
        return []
    failed = images_mark_failed(image_ids=ids, reason=poison_reason(limit))
    failed_images_remove_leftovers(image_ids=failed)  # files its crashed runs wrote
    return failed


def analysis_sweep(now: datetime | None = None) -> SweepReport:
    """Re-send every pending image without a live message; run periodically (Celery beat).

    - queued, never sent (the broker refused the upload's message): sent now;
    - processing, untouched for ANALYSIS_STALE_AFTER seconds (its worker died; a live worker
      touches its images after each step): queued and sent again, or failed once it has
      stopped a worker ANALYSIS_MAX_ATTEMPTS times;
    - queued, sent more than ANALYSIS_REQUEUE_AFTER seconds ago while the broker's queue is
      empty (the message was lost, e.g. a Redis restart without persistence): sent again.
    """
    now = now or timezone.now()
    report = SweepReport()
    stale = Q(claimed_at__isnull=True) | Q(
        claimed_at__lt=now - timedelta(seconds=settings.ANALYSIS_STALE_AFTER)
    )
    report.given_up = _give_up_on_poison(stale)
    report.never_sent = _resend(Q(status=Image.Status.QUEUED, enqueued_at__isnull=True))
    report.stalled = _resend(Q(stale, status=Image.Status.PROCESSING), requeue=True)
    old = now - timedelta(seconds=settings.ANALYSIS_REQUEUE_AFTER)
    lost = Q(status=Image.Status.QUEUED, enqueued_at__lt=old)
    if Image.objects.filter(lost).exists() and broker_queue_depth() == 0:
        report.lost = _resend(lost)
    if report.never_sent or report.stalled or report.lost or report.given_up:
        logger.info("Analysis sweep: %s", report)
    return report
