"""docker/compose.yml and the Dockerfile, checked without a Docker engine.

The Compose specification's JSON schema comes vendored in check-jsonschema (a test tool on PyPI),
so the file is validated against the published specification, not a hand-written copy.
"""

import importlib.resources
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"
APP_SERVICES = ("migrate", "web", "worker", "beat")
LONG_RUNNING = ("web", "worker", "beat", "db", "redis")


def compose_schema() -> dict:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yml").read_text())


def test_the_compose_file_follows_the_compose_specification(compose):
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_check_catches_a_broken_file(compose):
    broken = {**compose, "services": {**compose["services"], "web": {"image": 7, "bogus": 1}}}
    schema = compose_schema()
    assert list(jsonschema.validators.validator_for(schema)(schema).iter_errors(broken))


def test_it_runs_web_worker_beat_postgresql_and_redis(compose):
    services = compose["services"]
    assert set(LONG_RUNNING) <= set(services)
    assert services["db"]["image"].startswith("postgres")
    assert services["redis"]["image"].startswith("redis")
    assert "beat" in services["beat"]["command"] and "worker" in services["worker"]["command"]
    for name in LONG_RUNNING:
        assert services[name].get("restart") == "unless-stopped", name


def test_redis_keeps_queued_messages_across_a_restart(compose):
    redis = compose["services"]["redis"]
    assert "--appendonly yes" in redis["command"]
    assert '--save ""' not in redis["command"]
    assert any(volume.endswith(":/data") for volume in redis["volumes"])


def test_web_worker_database_and_redis_have_health_checks(compose):
    services = compose["services"]
    for name in ("web", "worker", "db", "redis"):
        assert services[name]["healthcheck"]["test"], name
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])
    app_depends = services["migrate"]["depends_on"]
    assert app_depends["db"]["condition"] == "service_healthy"
    assert app_depends["redis"]["condition"] == "service_healthy"


def test_the_application_never_runs_as_root(compose):
    users = re.findall(r"^USER\s+(\S+)", (DOCKER / "Dockerfile").read_text(), re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    for name in APP_SERVICES:
        user = str(compose["services"][name].get("user", users[-1]))
        assert user.split(":")[0] not in ("root", "0"), name


def test_web_and_workers_share_the_metrics_folder(compose):
    for name in ("web", "worker"):
        service = compose["services"][name]
        folder = service["environment"]["PROMETHEUS_MULTIPROC_DIR"]
        assert any(volume.endswith(f":{folder}") for volume in service["volumes"]), name
