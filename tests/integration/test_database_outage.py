"""A real database outage mid-batch (issue 15.2): a worker analyses an upload from a PostgreSQL
cluster of the test's own, which is shut down for about 30 s while the batch runs and started
again. Every image ends done (or failed with its reason), none is left queued or processing, and
none is analysed twice: the task's retries outlast the outage and the sweep (Celery beat,
embedded in the worker) rescues what a dead retry left."""

import os
import shutil
import time

import pytest
from django.db import connection

from tests.integration.conftest import broker_kind, wait_for
from tests.integration.private_postgres import (
    PrivatePostgres,
    free_port,
    postgres_bin,
    seed_in_subprocess,
)

pytestmark = pytest.mark.integration

CELLS = 256  # sixteen batches of 16: the outage lands mid-batch, with batches on either side
OUTAGE_S = float(os.environ.get("TEST_DB_OUTAGE_SECONDS", "30"))
WORKER = {
    "ANALYSIS_BATCH_SIZE": "16",
    "ANALYSIS_SWEEP_INTERVAL": "2",
    "ANALYSIS_STALE_AFTER": "20",
    # Capped low so the test ends soon after the outage; production's cap is 300 s.
    "ANALYSIS_RETRY_BACKOFF_MAX": "8",
    "ANALYSIS_REQUEUE_ON_START": "false",
}


@pytest.fixture
def private_postgres():
    if connection.vendor == "sqlite" or broker_kind() != "redis":
        pytest.skip("runs on PostgreSQL + Redis")
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("initdb is not installed (no /usr/lib/postgresql/*/bin)")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        pytest.skip("running as root without runuser to start PostgreSQL as postgres")
    server = PrivatePostgres(
        bin_dir, free_port(int(os.environ.get("TEST_PRIVATE_PG_PORT", "5440")))
    )
    try:
        server.create()
        yield server
    finally:
        server.destroy()


def counts(server: PrivatePostgres, ids: list[int]) -> dict[str, int]:
    rows = server.query(
        "SELECT status, count(*) FROM cases_image WHERE id = ANY(%s) GROUP BY status", ids
    )
    return dict(rows)


def results_per_image(server: PrivatePostgres, ids: list[int]) -> dict[int, int]:
    """How often each image was recorded as analysed, read from the audited results."""
    seen = dict.fromkeys(ids, 0)
    events = server.query("SELECT after FROM cases_auditevent WHERE action = 'analysis.finished'")
    for (after,) in events:
        for result in after["results"]:
            seen[result["image"]] += 1
    return seen


def test_a_database_outage_mid_batch_leaves_no_image_stuck_or_analysed_twice(
    private_postgres, worker_env, start_worker, tiny_model_path
):
    env = {**worker_env, **WORKER, "DATABASE_URL": private_postgres.url}
    seeded = seed_in_subprocess(env, tiny_model_path, CELLS)
    ids = seeded["images"]
    assert len(ids) == CELLS
    worker = start_worker("-B", **{**WORKER, "DATABASE_URL": private_postgres.url})

    def mid_batch() -> bool:
        done = counts(private_postgres, ids).get("done", 0)
        return 32 <= done < CELLS - 64

    wait_for(mid_batch, timeout=240, interval=0.1, worker=worker)
    before = counts(private_postgres, ids)
    private_postgres.stop()
    down = time.monotonic()
    time.sleep(OUTAGE_S)
    assert worker.process.poll() is None, worker.output()  # the worker rides the outage out
    private_postgres.start()
    back = time.monotonic()

    def settled() -> bool:
        now = counts(private_postgres, ids)
        return now.get("queued", 0) + now.get("processing", 0) == 0

    wait_for(settled, timeout=240, interval=0.5, worker=worker)
    finished_s = time.monotonic() - back
    after = counts(private_postgres, ids)
    failed = private_postgres.query(
        "SELECT id, error FROM cases_image WHERE id = ANY(%s) AND status = 'failed'", ids
    )
    per_image = results_per_image(private_postgres, ids)
    predictions = private_postgres.query(
        "SELECT image_id, count(*) FROM cases_prediction WHERE image_id = ANY(%s) "
        "GROUP BY image_id",
        ids,
    )
    retries = worker.log.read_text(errors="replace").count("Analysis will retry")
    print(
        f"database outage: {back - down:.1f} s down with {before} of {CELLS} images; "
        f"{retries} task retries; all settled {finished_s:.1f} s after the restart: {after}; "
        f"seeded in {seeded['seconds']:.1f} s"
    )
    assert retries > 0  # the outage did reach the worker's tasks
    assert after.get("done", 0) + after.get("failed", 0) == CELLS
    assert all(error for _, error in failed), failed  # a failure says why
    assert set(per_image.values()) <= {0, 1}  # nothing analysed twice
    assert {count for _, count in predictions} <= {1}
    done = {pk for pk, n in per_image.items() if n == 1}
    assert len(done) == after.get("done", 0) == len(predictions)
