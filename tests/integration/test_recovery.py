"""Faults an operator meets, recovered without a manual step (issue 15): a broker that is down
when images are uploaded, and a worker killed mid-batch beside a live one. Real PostgreSQL,
Redis and worker processes; the periodic sweep runs in Celery beat embedded in the worker (-B),
as `make run` runs it."""

import time

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.urls import reverse

from cases.models import Image, Prediction
from classifier.synthetic import make_cell, png_bytes
from tests.integration.conftest import broker_kind, wait_for
from tests.integration.test_worker import (
    done_count,
    kill_a_worker_mid_batch,
    results_per_image,
    upload,
)

pytestmark = pytest.mark.integration

FAST_SWEEP = {"ANALYSIS_SWEEP_INTERVAL": "1", "ANALYSIS_REQUEUE_ON_START": "false"}


def needs_postgres_and_redis() -> None:
    if connection.vendor == "sqlite" or broker_kind() != "redis":
        pytest.skip("runs on PostgreSQL + Redis")


def test_an_upload_while_the_broker_is_down_is_queued_and_analysed_once_it_is_back(
    case, clinician, client, live_model, private_broker, start_worker
):
    needs_postgres_and_redis()
    client.force_login(clinician)
    rng = np.random.default_rng(5)
    files = [
        SimpleUploadedFile(f"w{i}.png", png_bytes(make_cell(rng, i % 3 == 0, 90))) for i in range(8)
    ]
    started = time.monotonic()
    response = client.post(
        reverse("case_upload", args=[case.pk]),
        {"kind": "auto", "files": files},
        headers={"Accept": "application/json"},
    )
    upload_s = time.monotonic() - started
    # The broker (port 6390) is not running: the upload still succeeds and says queued.
    assert response.status_code == 200, response.content
    body = response.json()
    assert len(body["stored"]) == 8
    ids = [s["id"] for s in body["stored"]] + upload(case, clinician, 40)
    assert Image.objects.filter(pk__in=ids, status=Image.Status.QUEUED).count() == 48
    assert not Image.objects.filter(pk__in=ids, enqueued_at__isnull=False).exists()
    private_broker.start()
    back = time.monotonic()
    worker = start_worker("-B", **FAST_SWEEP)
    wait_for(lambda: done_count(ids) == 48, timeout=240, worker=worker)
    recovered_s = time.monotonic() - back
    print(f"broker down: upload answered in {upload_s:.2f} s; analysed {recovered_s:.1f} s after")
    assert set(results_per_image(ids).values()) == {1}


def test_a_dead_workers_batch_is_sent_again_long_before_the_visibility_timeout(
    case, clinician, live_model, start_worker, worker_env
):
    needs_postgres_and_redis()
    # The broker would give the killed worker's message back only after 10 minutes.
    worker_env["CELERY_VISIBILITY_TIMEOUT"] = "600"
    ids = kill_a_worker_mid_batch(case, clinician, start_worker)
    killed = time.monotonic()
    second = start_worker("-B", ANALYSIS_STALE_AFTER="5", **FAST_SWEEP)
    wait_for(lambda: done_count(ids) == 96, timeout=300, worker=second)
    recovered_s = time.monotonic() - killed
    print(f"a killed worker's batch recovered in {recovered_s:.1f} s (stale after 5 s)")
    assert recovered_s < 600
    assert Prediction.objects.filter(image_id__in=ids).count() == 96
    assert set(results_per_image(ids).values()) == {1}
