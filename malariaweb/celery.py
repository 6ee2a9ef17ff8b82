"""The Celery application. Workers start with `celery -A malariaweb worker`."""

import logging
import os
from datetime import UTC, datetime

from celery import Celery
from celery.signals import worker_process_init, worker_ready

import malariaweb.observability  # noqa: F401  (request ids in task headers, task metrics)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "malariaweb.settings")

# When this process started (timezone-aware UTC): see _requeue_pending_images.
_PROCESS_STARTED = datetime.now(UTC)

app = Celery("malariaweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _make_broker_folders(sender: Celery, **kwargs) -> None:
    # kombu's filesystem transport expects its folders to exist.
    options = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if options.get(key):
            os.makedirs(options[key], exist_ok=True)


@worker_process_init.connect
def _close_inherited_connections(**kwargs) -> None:
    # A forked pool process must not reuse the parent's database connection.
    from django.db import connections

    for conn in connections.all():
        conn.close_if_unusable_or_obsolete()


@worker_ready.connect
def _requeue_pending_images(**kwargs) -> None:
    from django.conf import settings

    if not settings.ANALYSIS_REQUEUE_ON_START:
        return
    from cases.analysis.queue import analysis_requeue_pending

    # Only what nobody sent since this process started: workers starting together send each
    # pending image once, not once per worker.
    count = analysis_requeue_pending(sent_before=_PROCESS_STARTED)
    if count:
        logging.getLogger(__name__).info("Requeued %d pending images at worker start", count)
