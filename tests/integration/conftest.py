"""Real Celery worker processes against the test database, a real broker and the test media."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from bench.celery_worker import ALONE, celery_worker_command
from tests.conftest import register_model

REPO = Path(__file__).resolve().parents[2]


def broker_kind() -> str:
    return "redis" if django_settings.CELERY_BROKER_URL.startswith("redis") else "filesystem"


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def purge_broker() -> None:
    if broker_kind() == "redis":
        import redis

        redis.Redis.from_url(django_settings.CELERY_BROKER_URL).flushdb()
    else:
        for key in ("data_folder_in", "processed_folder"):
            folder = Path(django_settings.CELERY_BROKER_TRANSPORT_OPTIONS[key])
            folder.mkdir(parents=True, exist_ok=True)
            for message in folder.glob("*"):
                message.unlink()


class Worker:
    """One `celery worker` process (solo pool: SIGKILL takes the task down with it)."""

    def __init__(self, env: dict, log: Path, extra: tuple[str, ...] = ()) -> None:
        self.log = log
        self.handle = log.open("ab")
        self.process = subprocess.Popen(
            celery_worker_command(
                django_settings.CELERY_TASK_DEFAULT_QUEUE, "--pool=solo", *ALONE, *extra
            ),
            cwd=REPO,
            env=env,
            stdout=self.handle,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.handle.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def worker_env(transactional_db, settings, tmp_path):
    """Environment for worker processes: this test's database, media folder and broker."""
    settings.ANALYSIS_BATCH_SIZE = 16
    purge_broker()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
        "CELERY_QUEUE": django_settings.CELERY_TASK_DEFAULT_QUEUE,
        "CELERY_TASK_TIME_LIMIT": "120",
        "CELERY_TASK_SOFT_TIME_LIMIT": "110",
        # Short, so a message held by a killed worker comes back within the test.
        "CELERY_VISIBILITY_TIMEOUT": "4",
        "SECURE_SSL_REDIRECT": "false",
        # Off, so that the Redis crash test proves redelivery by the broker alone.
        "ANALYSIS_REQUEUE_ON_START": "false",
        "PYTHONUNBUFFERED": "1",
    }
    yield env
    purge_broker()


@pytest.fixture
def start_worker(worker_env, tmp_path):
    workers: list[Worker] = []

    def start(*extra: str, **env: str) -> Worker:
        """A worker; `-B` embeds Celery beat (the sweep), `env` overrides its environment."""
        if "-B" in extra:
            extra = (*extra, f"--schedule={tmp_path / f'beat-{len(workers) + 1}'}")
        log = tmp_path / f"worker-{len(workers) + 1}.log"
        worker = Worker({**worker_env, **env}, log, extra)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def live_model(worker_env, tiny_model_path):
    from classifier.runtime import forget_loaded_model

    forget_loaded_model()
    return register_model(tiny_model_path)


def wait_for(condition, timeout: float = 300, interval: float = 0.05, worker=None) -> None:
    """Poll until condition() is true. The timeout only guards against a hung worker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if worker is not None and worker.process.poll() is not None:
            raise AssertionError(f"worker exited early:\n{worker.output()}")
        time.sleep(interval)
    detail = worker.output() if worker is not None else ""
    raise AssertionError(f"condition not met within {timeout}s\n{detail}")


class PrivateRedis:
    """A Redis server of the test's own on a spare port, to stop and start as a broker outage.

    Never the shared Redis on 6379: other test runs use it."""

    def __init__(self, port: int, folder: Path) -> None:
        self.port, self.folder, self.process = port, folder, None
        self.url = f"redis://127.0.0.1:{port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis.from_url(self.url)
        wait_for(lambda: _pings(client), timeout=20)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self.process = None


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


@pytest.fixture
def private_broker(worker_env, tmp_path, monkeypatch):
    """This process and its workers publish to a Redis on port 6390 that starts stopped."""
    import shutil

    from celery import current_app

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(int(os.environ.get("TEST_PRIVATE_REDIS_PORT", "6390")), tmp_path)

    def use(url: str) -> None:
        # Celery reads CELERY_BROKER_URL from the environment before its configuration.
        monkeypatch.setenv("CELERY_BROKER_URL", url)
        current_app.conf.broker_url = url
        current_app._pool = None  # connections and producers are pooled per broker URL
        current_app.amqp._producer_pool = None

    previous = django_settings.CELERY_BROKER_URL
    options = django_settings.CELERY_BROKER_TRANSPORT_OPTIONS
    django_settings.CELERY_BROKER_URL = server.url
    django_settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 600}
    worker_env["CELERY_BROKER_URL"] = server.url
    use(server.url)
    yield server
    # Restored here, before worker_env purges the shared broker at its own teardown.
    django_settings.CELERY_BROKER_URL = previous
    django_settings.CELERY_BROKER_TRANSPORT_OPTIONS = options
    use(previous)
    server.stop()
