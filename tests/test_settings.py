"""Configuration comes from environment variables; a bad production setting fails at start."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "x7#kq2!vL9@pR4$zW8^mN1&bT6*cY3(hJ5)fD0_gS-+eA=uQ" * 2,
    "ALLOWED_HOSTS": "malaria.example.org",
    "DATABASE_URL": "postgres://malaria:secret@db.example.org:5432/malaria",
    "CELERY_BROKER_URL": "redis://redis.example.org:6379/0",
    "AUDIT_HMAC_KEY": "p3!Zq8#Lm2$Vx7^Rt5&Kw9*Jd4(Hs1)Fn6_Gb0" * 2,
}


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v for k, v in os.environ.items() if k not in PRODUCTION and not k.startswith("CELERY")
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env={**clean, "DJANGO_SETTINGS_MODULE": "malariaweb.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_check_deploy():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY"),
        ({"ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS"),
        ({"DATABASE_URL": "nosuchdb://x"}, "DATABASE_URL"),
        ({"DEBUG": "maybe"}, "DEBUG"),
        ({"UPLOAD_MAX_FILE_MB": "lots"}, "UPLOAD_MAX_FILE_MB"),
        ({"STORAGE_BACKEND": "s3"}, "AWS_STORAGE_BUCKET_NAME"),
        ({"STORAGE_BACKEND": "ftp"}, "STORAGE_BACKEND"),
    ],
)
def test_a_missing_or_bad_setting_fails_at_start_and_names_it(override, named):
    result = run_manage("check", **{**PRODUCTION, **override})
    assert result.returncode != 0
    assert named in result.stderr


def test_the_secret_key_can_come_from_a_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text(PRODUCTION["SECRET_KEY"] + "\n")
    env = {**PRODUCTION, "SECRET_KEY": "", "SECRET_KEY_FILE": str(secret)}
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", **env)
    assert result.returncode == 0, result.stderr


def test_the_embedded_default_needs_no_variables():
    result = run_manage("check", DEBUG="true")
    assert result.returncode == 0, result.stderr
