"""S3 for real: a local S3-compatible server (moto's server mode on 127.0.0.1), the web side
storing uploads in it, and two worker processes in different working directories, each with a
media folder that does not exist, analysing from it: nothing depends on a local disk."""

import os
import socket
import subprocess

import boto3
import numpy as np
import pytest
from django.conf import settings as django_settings
from django.core.files.storage import default_storage

from bench.celery_worker import ALONE, celery_worker_command
from cases.intake import services
from cases.models import Image, Prediction
from classifier.synthetic import make_cell, png_bytes
from tests.conftest import register_model
from tests.integration.conftest import REPO, broker_kind, wait_for

pytestmark = pytest.mark.integration

BUCKET = "malaria-ops-tests"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


@pytest.fixture
def s3_storage(settings, s3_endpoint):
    settings.STORAGE_BACKEND = "s3"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET,
                "endpoint_url": s3_endpoint,
                "region_name": "us-east-1",
                "access_key": "testing",
                "secret_key": "testing",
                "default_acl": "private",
                "querystring_auth": True,
                "file_overwrite": False,
            },
        },
    }
    return s3_endpoint


def bucket_keys(endpoint: str) -> set[str]:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **_creds())
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def _creds() -> dict:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def start_s3_worker(env: dict, folder) -> tuple[subprocess.Popen, object]:
    folder.mkdir()
    log = (folder / "worker.log").open("ab")
    process = subprocess.Popen(
        celery_worker_command(
            django_settings.CELERY_TASK_DEFAULT_QUEUE, "--pool=solo", *ALONE, name=folder.name
        ),
        cwd=folder,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return process, log


def test_two_workers_in_other_folders_analyse_from_s3_alone(
    s3_storage, case, clinician, worker_env, tiny_model_path, tmp_path
):
    if broker_kind() != "redis":
        pytest.skip("runs on PostgreSQL + Redis")
    from classifier.runtime import forget_loaded_model

    forget_loaded_model()
    model = register_model(tiny_model_path)  # the model file too lives in the bucket
    assert model.file.name in bucket_keys(s3_storage)
    env = {
        **worker_env,
        **CREDENTIALS,
        "STORAGE_BACKEND": "s3",
        "AWS_STORAGE_BUCKET_NAME": BUCKET,
        "AWS_S3_ENDPOINT_URL": s3_storage,
        "AWS_S3_REGION_NAME": "us-east-1",
        "MEDIA_ROOT": str(tmp_path / "no-such-media"),
        "MALARIA_VAR_DIR": str(tmp_path / "no-such-var"),
        "PYTHONPATH": str(REPO),
    }
    workers = [start_s3_worker(env, tmp_path / name) for name in ("worker-a", "worker-b")]
    try:
        rng = np.random.default_rng(5)
        files = [(f"c{i}.png", png_bytes(make_cell(rng, i % 3 == 0, 90))) for i in range(64)]
        ids = [
            image.pk for image in services.images_add(case=case, files=files, by=clinician).stored
        ]
        stored = Image.objects.filter(pk__in=ids)
        assert all(image.file.name in bucket_keys(s3_storage) for image in stored)

        def all_done() -> bool:
            for process, _ in workers:
                assert process.poll() is None, "a worker exited"
            return stored.filter(status=Image.Status.DONE).count() == 64

        wait_for(all_done, timeout=300, interval=0.2)
    finally:
        for process, log in workers:
            process.terminate()
            process.wait(timeout=60)
            log.close()
    predictions = Prediction.objects.filter(image_id__in=ids)
    assert predictions.count() == 64
    keys = bucket_keys(s3_storage)
    assert all(p.heatmap.name in keys for p in predictions)
    with default_storage.open(predictions.first().heatmap.name) as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    # Both workers took batches, and neither wrote anything to a local media folder.
    logs = [(tmp_path / name / "worker.log").read_text() for name in ("worker-a", "worker-b")]
    assert all("succeeded" in log for log in logs), logs
    assert not os.path.exists(tmp_path / "no-such-media")
