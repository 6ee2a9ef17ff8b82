"""/healthz, /readyz and /metrics.

- /healthz: the process answers (no database, no broker): for a liveness probe.
- /readyz: 200 when this process can do its work, 503 naming each failing check otherwise:
  the database answers a query; the broker takes a message and gives it back (the path every
  upload's enqueue takes); the file storage takes a file and deletes it; an active classifier
  (and the active detector, if one is) exists and its stored file matches its SHA-256. The hash
  is read from the file only (no TensorFlow in the web process) and re-checked at most every
  READYZ_MODEL_RECHECK_SECONDS. Failures name the exception type only; details go to the log.
- /metrics: Prometheus text format. Per-process counters (all processes in multiprocess mode),
  plus, read at scrape time, images per status, the oldest queued image's age, the messages
  waiting in the broker's analysis queue and the active model versions.

The three paths are answered by HealthCheckMiddleware before host validation and the HTTPS
redirect, so probes from a container runtime or a load balancer need no Host header or TLS.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
import uuid

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily

logger = logging.getLogger(__name__)

PATHS = ("/healthz", "/readyz", "/metrics")
PROBE_TIMEOUT_S = 3.0

# (version pk, sha256, file name) -> monotonic time of the last successful hash check
_verified: dict[tuple, float] = {}


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


# --- readiness checks: each returns a short detail or raises ---------------------------------
def check_database() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return connection.vendor


def check_broker() -> str:
    """Publish a message on the broker the tasks use and take it back (the enqueue path)."""
    from malariaweb.celery import app

    name = f"{settings.CELERY_TASK_DEFAULT_QUEUE}.readyz"
    probe = uuid.uuid4().hex
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=PROBE_TIMEOUT_S)
        queue = conn.SimpleQueue(name)
        try:
            queue.put({"probe": probe}, retry=False)
            # Another process's probe may come back first: any message proves the round trip.
            message = queue.get(block=True, timeout=PROBE_TIMEOUT_S)
            message.ack()
        finally:
            queue.close()
    return conn.transport.driver_type


def check_storage() -> str:
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    name = default_storage.save(f"health/readyz-{uuid.uuid4().hex}.txt", ContentFile(b"ok"))
    default_storage.delete(name)
    return "writable"


def check_models() -> dict:
    from classifier.models import ModelVersion
    from classifier.registry import sha256_of

    active = {v.kind: v for v in ModelVersion.objects.filter(is_active=True)}
    if ModelVersion.Kind.CLASSIFIER not in active:
        raise LookupError("no active classifier")
    recheck = settings.READYZ_MODEL_RECHECK_SECONDS
    for version in active.values():
        key = (version.pk, version.sha256, version.file.name)
        if time.monotonic() - _verified.get(key, -1e12) < recheck:
            continue
        with version.file.open("rb") as handle:
            actual = sha256_of(handle)
        if actual != version.sha256:
            raise ValueError(f"model {version.name} does not match its recorded SHA-256")
        _verified[key] = time.monotonic()
    return {kind: version.name for kind, version in sorted(active.items())}


CHECKS = {
    "database": check_database,
    "broker": check_broker,
    "storage": check_storage,
    "model": check_models,
}


def readyz(request: HttpRequest) -> JsonResponse:
    results = {}
    for name, check in CHECKS.items():
        try:
            results[name] = {"ok": True, "detail": check()}
        except Exception as exc:  # a probe reports every failure; the log keeps the details
            logger.warning("readyz: %s check failed: %s", name, exc, exc_info=True)
            results[name] = {"ok": False, "error": type(exc).__name__}
    ready = all(result["ok"] for result in results.values())
    return JsonResponse(
        {"status": "ready" if ready else "unavailable", "checks": results},
        status=200 if ready else 503,
    )


# --- metrics --------------------------------------------------------------------------------
class PlatformCollector:
    """Gauges read from the database and the broker when /metrics is scraped."""

    def collect(self):
        up = GaugeMetricFamily(
            "malaria_metrics_source_up", "1 when this source could be read.", labels=["source"]
        )
        for source, collect in (("database", self._database), ("broker", self._broker)):
            try:
                yield from collect()
                up.add_metric([source], 1)
            except Exception as exc:  # a scrape must still answer while a source is down
                logger.warning("metrics: %s unreadable: %s", source, exc)
                up.add_metric([source], 0)
        yield up

    def _database(self):
        from django.db.models import Count, Min
        from django.utils import timezone

        from cases.models import Image
        from classifier.models import ModelVersion

        images = GaugeMetricFamily(
            "malaria_images", "Images in the database, by status.", labels=["status"]
        )
        rows = Image.objects.order_by().values("status").annotate(n=Count("pk"))
        counts = {row["status"]: row["n"] for row in rows}
        for status in Image.Status.values:
            images.add_metric([status], counts.get(status, 0))
        yield images
        oldest = Image.objects.filter(status=Image.Status.QUEUED).aggregate(t=Min("created_at"))[
            "t"
        ]
        yield GaugeMetricFamily(
            "malaria_oldest_queued_image_age_seconds",
            "Age of the oldest image still queued (0 when none is).",
            value=(timezone.now() - oldest).total_seconds() if oldest else 0,
        )
        info = InfoMetricFamily(
            "malaria_model", "Active model versions.", labels=["kind", "name", "sha256"]
        )
        for version in ModelVersion.objects.filter(is_active=True):
            info.add_metric([version.kind, version.name, version.sha256[:12]], {})
        yield info

    def _broker(self):
        from malariaweb.celery import app

        name = settings.CELERY_TASK_DEFAULT_QUEUE
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=PROBE_TIMEOUT_S)
            # Not passive: a queue no message has reached yet is empty, not an error (declaring
            # on kombu's Redis and filesystem transports creates nothing).
            declared = conn.default_channel.queue_declare(queue=name)
        depth = GaugeMetricFamily(
            "malaria_queue_messages", "Messages waiting in the broker queue.", labels=["queue"]
        )
        depth.add_metric([name], declared.message_count)
        yield depth


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if token and not hmac.compare_digest(offered.encode(), token.encode()):
        return HttpResponse(
            "metrics need the bearer token\n", status=401, content_type="text/plain"
        )
    registry = CollectorRegistry()
    registry.register(PlatformCollector())
    body = generate_latest(_registry()) + generate_latest(registry)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


VIEWS = {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics}


class HealthCheckMiddleware:
    """Answers the probe paths before host validation, the HTTPS redirect and sessions."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = VIEWS.get(request.path_info.rstrip("/") or "/")
        if view is None or request.method not in ("GET", "HEAD"):
            return self.get_response(request)
        request.observed_route = request.path_info.rstrip("/")
        return view(request)
