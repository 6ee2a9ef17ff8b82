"""Rules between the parts (ARCHITECTURE.md) that a refactoring could silently break."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

WEB_PROCESS = r"""
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "malariaweb.settings")
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth.models import User
from django.test import Client
import cases.views, cases.api, cases.admin, cases.review_views, malariaweb.urls  # noqa
from cases import services
from cases.models import Site
user = User.objects.create_user("web", password="x-long-password-1")
site = Site.objects.create(name="Lab", code="lab")
site.members.add(user)
patient = services.patient_create(site=site, identifier="P1", by=user)
case = services.case_create(patient=patient, by=user)
client = Client()
client.force_login(user)
for url in ["/", f"/cases/{case.pk}/", f"/cases/{case.pk}/status.json", "/api/cases/"]:
    assert client.get(url).status_code == 200, url
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
print("LOADED", loaded[:5])
sys.exit(1 if loaded else 0)
"""


def test_the_web_process_never_imports_tensorflow(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "DEBUG": "true",
        "MALARIA_VAR_DIR": str(tmp_path),
        "SECURE_SSL_REDIRECT": "false",
        "ALLOWED_HOSTS": "testserver",
    }
    result = subprocess.run(
        [sys.executable, "-c", WEB_PROCESS],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_classifier_imports_nothing_of_cases_or_training():
    for path in (REPO / "classifier").rglob("*.py"):
        assert not imports_of(path) & {"cases", "training"}, path


def test_the_ml_modules_do_not_import_django():
    for name in ["architecture", "preprocess", "engine", "overlay", "quality", "segment"]:
        path = REPO / "classifier" / f"{name}.py"
        if path.exists():
            assert "django" not in imports_of(path), path
