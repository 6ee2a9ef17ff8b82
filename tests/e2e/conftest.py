"""Browser tests: Playwright (sync API) driving Debian's chromium against pytest-django's
live_server, with a real Celery worker (tests/integration/conftest.py) analysing the uploads."""

import os
import shutil
from pathlib import Path

import pytest
from django.db import connections

from tests.integration.conftest import live_model, start_worker, worker_env  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
]


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where screenshots and downloads go: $E2E_ARTIFACTS_DIR, else test-artifacts/e2e/."""
    folder = Path(os.environ.get("E2E_ARTIFACTS_DIR") or REPO / "test-artifacts" / "e2e")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _browser_missing(reason: str) -> None:
    message = (
        f"{reason}. The browser tests need Debian's chromium: `make browser`, or "
        "`apt-get install chromium` (Playwright cannot download its own browsers here)."
    )
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture
def live_server(request, settings):
    """pytest-django's live server, but one per test, started under this test's settings.

    The stock fixture is session-scoped and builds its handler (and so SecurityMiddleware, which
    reads SECURE_SSL_REDIRECT once, when it is created) before any test's settings apply: with
    DEBUG=False it would redirect every request to an HTTPS port that does not exist.
    """
    from pytest_django.live_server_helper import LiveServer

    settings.SECURE_SSL_REDIRECT = False
    # Cookies marked Secure would need HTTPS, which the live server does not speak.
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    addr = (
        request.config.getvalue("liveserver")
        or os.getenv("DJANGO_LIVE_TEST_SERVER_ADDRESS")
        or "localhost"
    )
    server = LiveServer(addr)
    yield server
    server.stop()


@pytest.fixture
def browser(transactional_db):
    """One headless chromium per test. Function-scoped, and set up after the database, so that
    Playwright's event loop is gone before the database is flushed (Django refuses ORM calls
    from a thread with a running event loop)."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        found = shutil.which("chromium")
        _browser_missing(
            f"No chromium at {CHROMIUM}" + (f" (there is one at {found})" if found else "")
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _browser_missing("The playwright package is not installed")
    # Playwright's sync API keeps an asyncio loop running in this thread, so Django would refuse
    # the test's own ORM calls (fixtures, assertions). They are plain synchronous calls from the
    # main thread, which is safe: allow them while the browser lives, and only then.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            try:
                yield browser
            finally:
                browser.close()
                # Connections opened while Playwright ran belong to its context: close them
                # here, or PostgreSQL refuses to drop the test database at the end of the run.
                connections.close_all()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous
