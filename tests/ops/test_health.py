"""/healthz, /readyz and /metrics against the real database, broker and storage of the run."""

import json
from functools import partial

import numpy as np
import pytest
from celery import Celery
from django.core.files.storage import default_storage
from django.test import Client

from cases.intake import services
from classifier.synthetic import make_cell, png_bytes
from malariaweb import health
from malariaweb.celery import app


@pytest.fixture(autouse=True)
def _fresh_hash_checks():
    health._verified.clear()
    yield
    health._verified.clear()


@pytest.fixture
def probe(settings):
    # Probes come from a container runtime: any Host header, plain HTTP, no session.
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["malaria.example.org", "testserver"]
    return Client(HTTP_HOST="10.1.2.3:8000")


def readiness(probe) -> tuple[int, dict]:
    response = probe.get("/readyz")
    return response.status_code, json.loads(response.content)


def test_healthz_answers_without_database_host_check_or_https(probe):
    response = probe.get("/healthz")
    assert response.status_code == 200
    assert json.loads(response.content) == {"status": "ok"}


def test_readyz_is_ready_when_database_broker_storage_and_model_are(probe, active_model):
    code, body = readiness(probe)
    assert code == 200, body
    assert body["status"] == "ready"
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "database": True,
        "broker": True,
        "storage": True,
        "model": True,
    }
    assert body["checks"]["model"]["detail"] == {"classifier": active_model.name}


def test_readyz_refuses_without_an_active_classifier(probe, db):
    code, body = readiness(probe)
    assert code == 503
    assert body["checks"]["model"] == {"ok": False, "error": "LookupError"}
    assert body["checks"]["database"]["ok"] and body["checks"]["storage"]["ok"]


def test_readyz_refuses_a_model_file_that_no_longer_matches_its_hash(probe, active_model):
    assert readiness(probe)[0] == 200
    health._verified.clear()
    path = default_storage.path(active_model.file.name)
    with open(path, "ab") as handle:
        handle.write(b"tampered")
    code, body = readiness(probe)
    assert code == 503
    assert body["checks"]["model"] == {"ok": False, "error": "ValueError"}


def test_readyz_refuses_when_storage_cannot_be_written(probe, active_model, settings, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "a-file" / "media")},
        },
    }
    health._verified[(active_model.pk, active_model.sha256, active_model.file.name)] = 1e12
    code, body = readiness(probe)
    assert code == 503
    assert body["checks"]["storage"]["ok"] is False
    # The answer names the failure's type only, never a server path.
    assert str(tmp_path) not in json.dumps(body)


def test_readyz_refuses_when_no_message_can_be_published(probe, active_model, monkeypatch):
    dead = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    monkeypatch.setattr(
        app, "connection_for_write", partial(Celery.connection_for_write, app, dead)
    )
    code, body = readiness(probe)
    assert code == 503
    assert body["checks"]["broker"]["ok"] is False
    assert body["checks"]["model"]["ok"] is True


def test_metrics_report_requests_images_queue_and_model(
    probe, client, case, clinician, active_model
):
    client.force_login(clinician)
    assert client.get(f"/cases/{case.pk}/", secure=True).status_code == 200
    rng = np.random.default_rng(1)
    files = [(f"c{i}.png", png_bytes(make_cell(rng, i == 0, 90))) for i in range(3)]
    services.images_add(case=case, files=files, by=clinician)

    response = probe.get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    assert (
        'malaria_http_requests_total{method="GET",route="/cases/<int:case_id>/",status="200"}'
        in text
    )
    assert 'malaria_images{status="queued"} 3.0' in text
    assert f'malaria_model_info{{kind="classifier",name="{active_model.name}"' in text
    assert 'malaria_queue_messages{queue="malaria-tests"}' in text
    assert 'malaria_metrics_source_up{source="database"} 1.0' in text
    assert 'malaria_metrics_source_up{source="broker"} 1.0' in text


def test_metrics_need_the_token_when_one_is_set(probe, settings, db):
    settings.METRICS_TOKEN = "s3cret-token"
    assert probe.get("/metrics").status_code == 401
    assert probe.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    response = probe.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert response.status_code == 200
