"""A real worker process consumes real tasks from the broker (Redis in CI, filesystem embedded)."""

import signal

import numpy as np
import pytest
from django.db import connection

from cases.intake import services
from cases.models import AuditEvent, Case, Image, Prediction
from classifier.synthetic import make_cell, png_bytes
from tests.integration.conftest import broker_kind, wait_for

pytestmark = pytest.mark.integration


def upload(case, by, n: int, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    files = [(f"c{i}.png", png_bytes(make_cell(rng, i % 3 == 0, 90))) for i in range(n)]
    return [img.pk for img in services.images_add(case=case, files=files, by=by).stored]


def done_count(ids) -> int:
    return Image.objects.filter(pk__in=ids, status=Image.Status.DONE).count()


def test_a_worker_analyses_an_upload_from_the_broker(case, clinician, live_model, start_worker):
    if connection.vendor == "sqlite" or broker_kind() != "redis":
        pytest.skip("this variant runs on PostgreSQL + Redis; the embedded one is below")
    worker = start_worker()
    ids = upload(case, clinician, 40)
    wait_for(lambda: done_count(ids) == 40, worker=worker)
    case.refresh_from_db()
    assert case.status == Case.Status.AWAITING_REVIEW
    assert Prediction.objects.filter(image_id__in=ids, model_version=live_model).count() == 40


def results_per_image(ids) -> dict[int, int]:
    seen = dict.fromkeys(ids, 0)
    for event in AuditEvent.objects.filter(action="analysis.finished"):
        for result in event.after["results"]:
            seen[result["image"]] += 1
    return seen


def processing_count(ids) -> int:
    return Image.objects.filter(pk__in=ids, status=Image.Status.PROCESSING).count()


def kill_a_worker_mid_batch(case, clinician, start_worker) -> list[int]:
    """Upload 96 cells (six batches of 16) to a new worker and SIGKILL it while a batch is
    claimed but not finished; the uploaded images' ids."""
    first = start_worker()
    ids = upload(case, clinician, 96)

    def frozen_mid_batch() -> bool:
        # A batch is finished and the next one is claimed but not finished. Freeze the worker
        # first, so that it cannot finish that batch between this check and the kill.
        if not (16 <= done_count(ids) < 96 and processing_count(ids) > 0):
            return False
        first.process.send_signal(signal.SIGSTOP)
        if processing_count(ids) > 0:
            return True
        first.process.send_signal(signal.SIGCONT)  # it finished just now: try the next batch
        return False

    wait_for(frozen_mid_batch, worker=first, interval=0.01)
    first.kill()
    return ids


def kill_mid_batch_then_recover(case, clinician, start_worker) -> list[int]:
    ids = kill_a_worker_mid_batch(case, clinician, start_worker)
    assert processing_count(ids) > 0
    second = start_worker()
    wait_for(lambda: done_count(ids) == 96, worker=second)
    assert Prediction.objects.filter(image_id__in=ids).count() == 96
    # Every image's result was recorded exactly once, including the interrupted batch's.
    assert set(results_per_image(ids).values()) == {1}
    return ids


def test_a_worker_killed_mid_batch_loses_nothing_and_duplicates_nothing(
    case, clinician, live_model, start_worker
):
    if broker_kind() != "redis":
        pytest.skip("redelivery by the broker needs acknowledgements (Redis)")
    # The killed worker's message comes back after the visibility timeout (4 s here).
    kill_mid_batch_then_recover(case, clinician, start_worker)


@pytest.mark.embedded
def test_the_embedded_default_recovers_a_killed_worker_by_requeueing(
    case, clinician, live_model, start_worker, worker_env
):
    if connection.vendor != "sqlite" or broker_kind() != "filesystem":
        pytest.skip("runs in `make test`'s embedded pass (SQLite + filesystem broker)")
    # The filesystem broker has no acknowledgements: a starting worker re-sends pending images.
    worker_env["ANALYSIS_REQUEUE_ON_START"] = "true"
    kill_mid_batch_then_recover(case, clinician, start_worker)


@pytest.mark.embedded
def test_the_embedded_default_runs_on_sqlite_and_the_filesystem_broker(
    case, clinician, live_model, start_worker
):
    if connection.vendor != "sqlite" or broker_kind() != "filesystem":
        pytest.skip("runs in `make test`'s embedded pass (SQLite + filesystem broker)")
    worker = start_worker()
    ids = upload(case, clinician, 48)
    # The web process keeps writing while the worker writes: WAL + immediate transactions.
    more = upload(case, clinician, 16, seed=1)
    wait_for(lambda: done_count(ids + more) == 64, worker=worker)
    assert Prediction.objects.filter(image_id__in=ids + more).count() == 64
