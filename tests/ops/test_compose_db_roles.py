"""docker/compose.yml: the application runs as a database role that cannot drop the audit
trail's triggers; only the migrate service uses the owner role (docker/postgres/init-roles.sh)."""

from pathlib import Path

import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def services() -> dict:
    return yaml.safe_load((DOCKER / "compose.yml").read_text())["services"]


def test_web_worker_and_beat_connect_as_the_app_role_and_only_migrate_as_the_owner():
    found = services()
    for name in ("web", "worker", "beat"):
        assert found[name]["environment"]["DATABASE_URL"].startswith("postgres://malaria_app:")
    assert found["migrate"]["environment"]["DATABASE_URL"].startswith("postgres://malaria_owner:")
    assert found["db"]["environment"]["POSTGRES_USER"] == "postgres"
    assert all("AUDIT_HMAC_KEY" in found[n]["environment"] for n in ("web", "worker", "beat"))


def test_the_init_script_gives_the_app_role_rows_only():
    mounted = [v for v in services()["db"]["volumes"] if "init-roles.sh" in v]
    assert mounted and mounted[0].startswith(
        "./postgres/init-roles.sh:/docker-entrypoint-initdb.d/"
    )
    script = (DOCKER / "postgres" / "init-roles.sh").read_text()
    assert "CREATE DATABASE malaria OWNER malaria_owner" in script
    assert "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO malaria_app" in script
    assert "TRUNCATE ON" not in script and "ALL PRIVILEGES" not in script
