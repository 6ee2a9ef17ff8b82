"""Sending images to the workers: the one place that publishes analysis messages."""

from django.conf import settings

from cases.analysis.tasks import analyse_images
from cases.models import Image


def analysis_enqueue(image_ids: list[int]) -> None:
    """Send image ids to the workers in batches; call via transaction.on_commit."""
    size = settings.ANALYSIS_BATCH_SIZE
    for start in range(0, len(image_ids), size):
        analyse_images.delay(image_ids[start : start + size])


def analysis_requeue_pending() -> int:
    """Send every image still queued or processing to the workers again; returns the count.

    Run when a worker starts: a broker without acknowledgements (the embedded filesystem one) or
    a restarted Redis without persistence loses messages, and images must not wait forever. A
    duplicate message is harmless: the analysis computes only what is still missing.
    """
    pending = list(
        Image.objects.filter(status__in=[Image.Status.QUEUED, Image.Status.PROCESSING])
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if pending:
        analysis_enqueue(pending)
    return len(pending)
