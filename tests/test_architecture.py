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
import cases.intake.views, cases.api.views, cases.admin, cases.review.views, malariaweb.urls  # noqa
from cases.intake import services
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
    for name in [
        "architecture",
        "preprocess",
        "engine",
        "overlay",
        "quality",
        "segment",
        "calibration",
        "hashing",
    ]:
        path = REPO / "classifier" / f"{name}.py"
        if path.exists():
            assert "django" not in imports_of(path), path


# Every top-level package of the project (a new Django app is covered without editing this),
# and the benchmark scripts.
PROJECT_PACKAGES = tuple(
    sorted(
        {path.parent.name for path in REPO.glob("*/__init__.py") if path.parent.name != "tests"}
        | {"bench"}
    )
)


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PROJECT_PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports, counting imports inside function bodies too."""
    modules = project_modules()
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles_of(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_hidden_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles_of(graph) == [["a", "b", "c"]]
    assert cycles_of({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_sees_imports_inside_functions():
    graph = import_graph()
    # malariaweb.celery imports the requeue service inside a signal handler.
    assert "cases.analysis.queue" in graph["malariaweb.celery"]


def test_no_import_cycles_among_the_projects_modules():
    assert cycles_of(import_graph()) == []


def test_the_cycle_check_covers_every_app():
    assert {"bench", "cases", "classifier", "training", "malariaweb", "integrations"} <= set(
        PROJECT_PACKAGES
    )
