"""Request ids: answered, logged (JSON lines) and carried in Celery messages into the worker."""

import io
import json
import logging

import numpy as np
import pytest
import redis
from django.conf import settings as django_settings
from django.http import HttpResponse
from django.test import RequestFactory

from cases.analysis.queue import analysis_enqueue
from classifier.synthetic import make_cell, png_bytes
from malariaweb.observability import (
    JsonFormatter,
    RequestIdFilter,
    RequestIdMiddleware,
    current_request_id,
)
from tests.integration.conftest import broker_kind, wait_for


def handle(view, **headers):
    return RequestIdMiddleware(view)(RequestFactory().get("/somewhere", headers=headers))


def test_every_response_carries_a_request_id():
    first = handle(lambda request: HttpResponse("ok"))
    second = handle(lambda request: HttpResponse("ok"))
    assert len(first["X-Request-ID"]) == 32
    assert first["X-Request-ID"] != second["X-Request-ID"]


def test_a_callers_plain_request_id_is_kept_and_an_unsafe_one_replaced():
    assert (
        handle(lambda r: HttpResponse(), **{"X-Request-ID": "lb-42.a"})["X-Request-ID"] == "lb-42.a"
    )
    replaced = handle(lambda r: HttpResponse(), **{"X-Request-ID": 'x"\n{evil}'})["X-Request-ID"]
    assert replaced != 'x"\n{evil}' and len(replaced) == 32


def test_json_logs_carry_the_request_id_of_the_request_they_were_written_in():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    log = logging.getLogger("tests.ops.json")
    log.addHandler(handler)
    log.setLevel(logging.INFO)

    def view(request):
        log.info("stored %d images", 3, extra={"case": 7})
        return HttpResponse()

    try:
        handle(view, **{"X-Request-ID": "req-json-1"})
        log.info("outside")
    finally:
        log.removeHandler(handler)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["message"] == "stored 3 images"
    assert inside["request_id"] == "req-json-1"
    assert inside["case"] == 7 and inside["level"] == "INFO"
    assert "request_id" not in outside
    assert current_request_id() == ""


def test_a_published_analysis_message_carries_the_request_id(db):
    if broker_kind() != "redis":
        pytest.skip("reads the raw message from Redis")
    client = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    queue = django_settings.CELERY_TASK_DEFAULT_QUEUE
    client.delete(queue)

    def view(request):
        analysis_enqueue([1, 2, 3])
        return HttpResponse()

    try:
        handle(view, **{"X-Request-ID": "req-publish-1"})
        message = json.loads(client.lpop(queue))
    finally:
        client.delete(queue)
    assert message["headers"]["request_id"] == "req-publish-1"
    assert message["headers"]["task"] == "cases.tasks.analyse_images"


@pytest.mark.integration
def test_the_worker_logs_the_uploads_request_id_and_counts_its_images(
    case, clinician, live_model, worker_env, start_worker, tmp_path, client, monkeypatch
):
    if broker_kind() != "redis":
        pytest.skip("runs on PostgreSQL + Redis")
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    worker_env.update(LOG_FORMAT="json", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    worker = start_worker()
    rng = np.random.default_rng(3)
    files = [io.BytesIO(png_bytes(make_cell(rng, i % 2 == 0, 90))) for i in range(6)]
    for i, handle_ in enumerate(files):
        handle_.name = f"cell{i}.png"
    client.force_login(clinician)
    response = client.post(
        f"/api/cases/{case.pk}/images/",
        {"files": files},
        headers={"X-Request-ID": "req-upload-77"},
        secure=True,
    )
    assert response.status_code == 201, response.content
    assert response["X-Request-ID"] == "req-upload-77"

    def logged_task_lines() -> list[dict]:
        lines = []
        for line in worker.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("request_id") == "req-upload-77":
                    lines.append(entry)
        return lines

    wait_for(lambda: any("succeeded" in e["message"] for e in logged_task_lines()), worker=worker)
    entry = next(e for e in logged_task_lines() if "succeeded" in e["message"])
    assert entry["task"] == "cases.tasks.analyse_images" and entry["task_id"]

    # The worker's counters, read the way /metrics reads them in multiprocess mode.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    text = client.get("/metrics").content.decode()
    assert "malaria_images_analysed_total 6.0" in text
    assert (
        'malaria_task_duration_seconds_count{state="SUCCESS",task="cases.tasks.analyse_images"} 1.0'
        in text
    )
