"""Request ids, JSON logs and Prometheus metrics, shared by the web process and the workers.

- Every request gets an id (the caller's `X-Request-ID` when it is a sane token, else a new one).
  It is answered in the `X-Request-ID` header, added to every log record of that request, and
  carried in the headers of every Celery message the request publishes, so a worker's log lines
  about an upload carry the id of the request that stored it (and so do its retries).
- `LOG_FORMAT=json` writes one JSON object per line (time, level, logger, message, request_id,
  task_id, task, exception); `plain` (the default) is the classic one-line text.
- Metrics come from prometheus_client. Counters and histograms are per process; with several
  gunicorn and Celery processes set `PROMETHEUS_MULTIPROC_DIR` to a folder shared by all of them
  on a host (prometheus_client's multiprocess mode), and /metrics sums them. Queue depth, images
  per status and the active models are read from the database and the broker when /metrics is
  scraped (malariaweb.health), so they are right whichever process answers.

Nothing here imports Django models or TensorFlow at import time: the module is imported while the
settings and the Celery app are being configured.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.config
import os
import re
import time
import uuid
from datetime import UTC, datetime

from celery.signals import (
    before_task_publish,
    setup_logging,
    task_postrun,
    task_prerun,
    task_retry,
)
from prometheus_client import Counter, Histogram

REQUEST_ID_HEADER = "X-Request-ID"
# The Celery message header that carries the request id (task.request.<name> in the worker).
TASK_HEADER = "request_id"
_TOKEN = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
_task: contextvars.ContextVar[tuple[str, str]] = contextvars.ContextVar("task", default=("", ""))

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("malariaweb.access")

# --- metrics (per process; summed over processes in multiprocess mode) -----------------------
HTTP_REQUESTS = Counter(
    "malaria_http_requests_total",
    "HTTP requests answered, by method, URL route and status code.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "malaria_http_request_duration_seconds",
    "Time to answer an HTTP request, by URL route.",
    ["route"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TASK_DURATION = Histogram(
    "malaria_task_duration_seconds",
    "Celery task run time, by task and final state.",
    ["task", "state"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
TASK_RETRIES = Counter("malaria_task_retries_total", "Celery task retries, by task.", ["task"])
IMAGES_ANALYSED = Counter(
    "malaria_images_analysed_total", "Images the analysis task finished (a result stored)."
)
IMAGES_FAILED = Counter("malaria_images_failed_total", "Images the analysis task marked failed.")


# --- request ids ----------------------------------------------------------------------------
def current_request_id() -> str:
    return _request_id.get()


def new_request_id(offered: str | None = None) -> str:
    """The caller's id when it is a short plain token (it ends up in logs), else a fresh one."""
    if offered and _TOKEN.match(offered):
        return offered
    return uuid.uuid4().hex


def _route_of(request) -> str:
    match = getattr(request, "resolver_match", None)
    if match is not None and match.route:
        return "/" + match.route.lstrip("^").rstrip("$")
    return "<unresolved>"


class RequestIdMiddleware:
    """First in MIDDLEWARE: the request id, one access-log line and the request metrics."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        request_id = new_request_id(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id
        token = _request_id.set(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            elapsed = time.perf_counter() - started
            route = getattr(request, "observed_route", None) or _route_of(request)
            HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
            HTTP_DURATION.labels(route).observe(elapsed)
            response[REQUEST_ID_HEADER] = request_id
            access_logger.log(
                logging.DEBUG if route in ("/healthz", "/readyz", "/metrics") else logging.INFO,
                "%s %s %s %.1f ms",
                request.method,
                route,
                response.status_code,
                elapsed * 1000,
                extra={"status": response.status_code, "duration_ms": round(elapsed * 1000, 1)},
            )
            return response
        finally:
            _request_id.reset(token)


# --- logs -----------------------------------------------------------------------------------
class RequestIdFilter(logging.Filter):
    """Adds request_id, task_id and task (empty outside a request or task) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = _request_id.get()
        task_id, task_name = _task.get()
        record.request_id = request_id
        record.task_id = task_id
        record.task = task_name
        record.request_tag = f" [{request_id}]" if request_id else ""
        return True


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
    "task_id",
    "task",
    "request_tag",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `extra={...}` fields are kept as keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "") or None,
            "task_id": getattr(record, "task_id", "") or None,
            "task": getattr(record, "task", "") or None,
            "process": record.process,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps({k: v for k, v in entry.items() if v is not None}, default=str)


def logging_config(*, log_format: str, level: str) -> dict:
    """The LOGGING setting: one console handler, plain text or JSON lines."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "malariaweb.observability.RequestIdFilter"}},
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s"},
            "json": {"()": "malariaweb.observability.JsonFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"django.db.backends": {"level": "WARNING"}},
    }


if os.environ.get("LOG_FORMAT", "plain").strip().lower() == "json":
    # Celery would otherwise replace the root handler with its own text format in the worker.
    @setup_logging.connect(weak=False)
    def _use_django_logging(**kwargs) -> None:
        from django.conf import settings

        logging.config.dictConfig(settings.LOGGING)


# --- Celery: the request id travels in the message headers ----------------------------------
@before_task_publish.connect(weak=False)
def _put_request_id_in_headers(headers: dict | None = None, **kwargs) -> None:
    request_id = _request_id.get()
    if request_id and headers is not None and not headers.get(TASK_HEADER):
        headers[TASK_HEADER] = request_id


_started: dict[str, tuple[float, contextvars.Token, contextvars.Token]] = {}


@task_prerun.connect(weak=False)
def _task_started(task_id: str = "", task=None, **kwargs) -> None:
    request_id = str(getattr(task.request, TASK_HEADER, "") or "") if task is not None else ""
    name = getattr(task, "name", "") or ""
    _started[task_id] = (
        time.perf_counter(),
        _request_id.set(request_id),
        _task.set((task_id, name)),
    )


@task_postrun.connect(weak=False)
def _task_finished(task_id: str = "", task=None, retval=None, state: str = "", **kwargs) -> None:
    started = _started.pop(task_id, None)
    name = getattr(task, "name", "") or ""
    if started is not None:
        began, request_token, task_token = started
        TASK_DURATION.labels(name, state or "UNKNOWN").observe(time.perf_counter() - began)
        try:
            _request_id.reset(request_token)
            _task.reset(task_token)
        except ValueError:  # set in another context (eager calls nest): leave it
            pass
    if name == "cases.tasks.analyse_images" and state == "SUCCESS" and isinstance(retval, dict):
        done, failed = retval.get("done", 0), retval.get("failed", 0)
        IMAGES_ANALYSED.inc(done if isinstance(done, int) else len(done))
        IMAGES_FAILED.inc(failed if isinstance(failed, int) else len(failed))


@task_retry.connect(weak=False)
def _task_retried(sender=None, **kwargs) -> None:
    TASK_RETRIES.labels(getattr(sender, "name", "") or "").inc()
