"""Load test: gunicorn + 2 Celery workers on PostgreSQL and Redis, all on 127.0.0.1.

    .venv/bin/python bench/load.py --database-url postgres://postgres@127.0.0.1:5432/malaria_load \
        --broker-url redis://127.0.0.1:6379/6 --duration 60 --clinicians 20 --reviewers 2

It (re)creates the named database (its name must contain "load") and empties the Redis database,
migrates, installs the shipped models, creates a site, clinicians and reviewers, then starts
gunicorn (--web-workers processes) and two `celery worker` processes. For --duration seconds (and
at most --max-requests requests) each clinician creates a patient and a case through the API,
uploads --cells generated cells in one request and polls the case until it awaits review, then
starts the next case; each reviewer reads the review queue page and the API review queue. Then it
waits for the workers to finish what was uploaded (--drain-timeout) and prints requests/s,
p50/p95/p99 per endpoint, errors, cells analysed per second, and checks that every uploaded image
was stored (row and file) and analysed exactly once and that `verify_audit` passes. Exit status 1
when a check fails. Everything binds to and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import io
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.celery_worker import celery_worker_command  # noqa: E402

LOCAL_HOSTS = {"127.0.0.1", "localhost"}
PASSWORD = "load-test-password-1"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--broker-url", required=True)
    parser.add_argument("--duration", type=float, default=60, help="seconds of load (max 900)")
    parser.add_argument("--max-requests", type=int, default=20000, help="stop after this many")
    parser.add_argument("--clinicians", type=int, default=20)
    parser.add_argument("--reviewers", type=int, default=2)
    parser.add_argument("--cells", type=int, default=50, help="cells per upload")
    parser.add_argument("--web-workers", type=int, default=3, help="gunicorn processes")
    parser.add_argument("--drain-timeout", type=float, default=300)
    args = parser.parse_args(argv)
    if not 0 < args.duration <= 900:
        parser.error("--duration must be in (0, 900] seconds")
    for url in (args.database_url, args.broker_url):
        if urllib.parse.urlsplit(url).hostname not in LOCAL_HOSTS:
            parser.error(f"{url}: the load test runs against 127.0.0.1 only")
    if "load" not in urllib.parse.urlsplit(args.database_url).path:
        parser.error("the database is dropped and recreated: its name must contain 'load'")
    return args


# --- the stack ------------------------------------------------------------------------------
def fresh_services(args: argparse.Namespace) -> None:
    import psycopg
    import redis

    parts = urllib.parse.urlsplit(args.database_url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    redis.Redis.from_url(args.broker_url).flushdb()


def stack_env(args: argparse.Namespace, media: Path) -> dict:
    return {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "AUDIT_HMAC_KEY": secrets.token_urlsafe(40),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "DATABASE_URL": args.database_url,
        "CELERY_BROKER_URL": args.broker_url,
        "CELERY_QUEUE": "malaria-load",
        "MEDIA_ROOT": str(media),
        "STATIC_ROOT": str(media.parent / "static"),
        "MALARIA_VAR_DIR": str(media.parent / "var"),
        "LOG_LEVEL": "WARNING",
        "LOGIN_MAX_FAILURES_PER_ADDRESS": "0",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
    }


SETUP = """
from django.contrib.auth.models import Group, User
from cases.models import Site
site = Site.objects.create(name="Load Lab", code="load")
for role, count in (("clinician", {clinicians}), ("reviewer", {reviewers})):
    group = Group.objects.get(name=role)
    for i in range(count):
        user = User.objects.create_user(f"{{role}}{{i}}", password="{password}")
        user.groups.add(group)
        site.members.add(user)
print("SITE", site.pk)
"""


def manage(env: dict, *command: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *command],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
        raise SystemExit(f"manage.py {' '.join(command[:1])} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_stack(args, env: dict, port: int, logs: Path) -> list[subprocess.Popen]:
    commands = [
        [
            sys.executable,
            "-m",
            "gunicorn",
            "malariaweb.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(args.web_workers),
            "--timeout",
            "120",
        ]
    ]
    for n in range(2):
        commands.append(
            celery_worker_command(
                "malaria-load", "--concurrency=1", loglevel="warning", name=f"load{n}"
            )
        )
    processes = []
    for i, command in enumerate(commands):
        log = (logs / f"process-{i}.log").open("wb")
        processes.append(
            subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        )
    return processes


def wait_ready(base: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=10) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1)
    raise SystemExit("the web process did not become ready")


# --- the clients ----------------------------------------------------------------------------
class Recorder:
    def __init__(self, max_requests: int, deadline: float) -> None:
        self.lock = threading.Lock()
        self.times: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.error_samples: list[str] = []
        self.count = 0
        self.max_requests = max_requests
        self.deadline = deadline
        self.uploaded: list[int] = []

    def running(self) -> bool:
        return time.monotonic() < self.deadline and self.count < self.max_requests

    def record(self, endpoint: str, seconds: float, error: str | None) -> None:
        with self.lock:
            self.count += 1
            self.times[endpoint].append(seconds)
            if error:
                self.errors[endpoint] += 1
                if len(self.error_samples) < 10:
                    self.error_samples.append(f"{endpoint}: {error}")


class Client:
    def __init__(self, base: str, recorder: Recorder) -> None:
        self.base = base
        self.recorder = recorder
        self.headers: dict[str, str] = {}
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def call(self, endpoint: str, method: str, path: str, body=None, content_type=None, ok=(200,)):
        headers = dict(self.headers)
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(
            self.base + path, data=body, method=method, headers=headers
        )
        started = time.perf_counter()
        error, data = None, b""
        try:
            with self.opener.open(request, timeout=120) as response:
                data = response.read()
                if response.status not in ok:
                    error = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            data = exc.read()
            error = f"HTTP {exc.code} {data[:200]!r}"
        except (urllib.error.URLError, OSError) as exc:
            error = repr(exc)
        self.recorder.record(endpoint, time.perf_counter() - started, error)
        return None if error else data

    def json(self, endpoint: str, method: str, path: str, payload=None, ok=(200,)):
        body = json.dumps(payload).encode() if payload is not None else None
        data = self.call(endpoint, method, path, body, "application/json" if body else None, ok)
        return json.loads(data) if data else None

    def token_login(self, username: str) -> bool:
        answer = self.json(
            "POST /api/v1/auth/token/",
            "POST",
            "/api/v1/auth/token/",
            {"username": username, "password": PASSWORD},
        )
        if answer:
            self.headers["Authorization"] = f"Token {answer['token']}"
        return bool(answer)

    def session_login(self, username: str) -> bool:
        page = self.call("GET /login/", "GET", "/login/")
        match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page or b"")
        if not match:
            return False
        form = urllib.parse.urlencode(
            {"username": username, "password": PASSWORD, "csrfmiddlewaretoken": match[1].decode()}
        ).encode()
        self.headers["Referer"] = self.base + "/login/"
        done = self.call(
            "POST /login/", "POST", "/login/", form, "application/x-www-form-urlencoded"
        )
        return done is not None


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = io.BytesIO()
    for name, data in files:
        body.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            "Content-Type: image/png\r\n\r\n".encode()
        )
        body.write(data + b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    return body.getvalue(), f"multipart/form-data; boundary={boundary}"


def clinician(client: Client, index: int, site: int, cells: int) -> None:
    import numpy as np

    from classifier.synthetic import make_cell, png_bytes

    if not client.token_login(f"clinician{index}"):
        return
    rng = np.random.default_rng(index)
    number = 0
    while client.recorder.running():
        number += 1
        patient = client.json(
            "POST /api/v1/patients/",
            "POST",
            "/api/v1/patients/",
            {"site": site, "identifier": f"L-{index}-{number}"},
            ok=(201,),
        )
        if not patient:
            continue
        case = client.json(
            "POST /api/v1/cases/", "POST", "/api/v1/cases/", {"patient": patient["id"]}, ok=(201,)
        )
        if not case:
            continue
        files = [
            (f"c{i}.png", png_bytes(make_cell(rng, rng.random() < 0.3, 90))) for i in range(cells)
        ]
        body, content_type = multipart(files)
        stored = client.call(
            "POST /api/v1/cases/<id>/images/",
            "POST",
            f"/api/v1/cases/{case['id']}/images/",
            body,
            content_type,
            ok=(201,),
        )
        if stored is None:
            continue
        with client.recorder.lock:
            client.recorder.uploaded.append(case["id"])
        while client.recorder.running():
            detail = client.json("GET /api/v1/cases/<id>/", "GET", f"/api/v1/cases/{case['id']}/")
            if detail and detail.get("status") == "awaiting_review":
                break
            time.sleep(1)


def reviewer(client: Client, index: int) -> None:
    api = Client(client.base, client.recorder)
    if not (client.session_login(f"reviewer{index}") and api.token_login(f"reviewer{index}")):
        return
    while client.recorder.running():
        client.call("GET /review/", "GET", "/review/")
        api.json("GET /api/v1/review-queue/", "GET", "/api/v1/review-queue/")
        time.sleep(0.5)


# --- after the run --------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def report_requests(recorder: Recorder, elapsed: float) -> None:
    total = sum(len(v) for v in recorder.times.values())
    errors = sum(recorder.errors.values())
    print(
        f"\nrequests: {total} in {elapsed:.1f} s = {total / elapsed:.1f} requests/s, errors {errors}"
    )
    print(f"{'endpoint':38} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for endpoint, values in sorted(recorder.times.items()):
        p50, p95, p99 = (percentile(values, q) * 1000 for q in (50, 95, 99))
        print(
            f"{endpoint:38} {len(values):6d} {p50:8.0f} {p95:8.0f} {p99:8.0f} "
            f"{recorder.errors.get(endpoint, 0):6d}"
        )
    for sample in recorder.error_samples:
        print("  error:", sample)


def _setup_django(env: dict) -> None:
    """Point this process at the load run's database, broker and storage."""
    keys = ("DATABASE_URL", "MEDIA_ROOT", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS")
    keys += ("AUDIT_HMAC_KEY", "CELERY_BROKER_URL", "MALARIA_VAR_DIR")
    os.environ.update({k: env[k] for k in keys})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "malariaweb.settings")
    sys.path.insert(0, str(REPO))
    import django

    django.setup()


def _analysis_tally(drain_timeout: float) -> dict:
    """Wait for the workers to drain, then count images, results and duplicates."""
    from django.core.files.storage import default_storage
    from django.db.models import Count, Max, Min

    from cases.models import AuditEvent, Image, Prediction

    images = Image.objects.all()  # a fresh database: every image the run stored
    deadline = time.monotonic() + drain_timeout
    while images.filter(status__in=Image.PENDING).exists() and time.monotonic() < deadline:
        time.sleep(1)
    per_image = Prediction.objects.values("image_id").annotate(n=Count("pk"))
    results = defaultdict(int)
    for event in AuditEvent.objects.filter(action="analysis.finished").iterator():
        for result in (event.after or {}).get("results", []):
            results[result["image"]] += 1
    return {
        "total": images.count(),
        "done": images.filter(status=Image.Status.DONE).count(),
        "failed": images.filter(status=Image.Status.FAILED).count(),
        "left": images.filter(status__in=Image.PENDING).count(),
        "span": Prediction.objects.aggregate(first=Min("created_at"), last=Max("created_at")),
        "predictions": Prediction.objects.count(),
        "twice": sum(1 for row in per_image if row["n"] > 1),
        "twice_audited": sum(1 for n in results.values() if n > 1),
        "missing_files": sum(
            1 for f in images.values_list("file", flat=True) if not default_storage.exists(f)
        ),
    }


def _audit_intact() -> bool:
    from django.core.management import call_command

    out = io.StringIO()
    try:
        call_command("verify_audit", stdout=out)
        intact = True
    except Exception as exc:  # CommandError names the broken event
        out.write(str(exc))
        intact = False
    print("verify_audit:", out.getvalue().strip())
    return intact


def verify(env: dict, case_ids: list[int], drain_timeout: float, started_at: float) -> bool:
    """Wait for the workers, then check storage, exactly-once analysis and the audit trail."""
    _setup_django(env)
    t = _analysis_tally(drain_timeout)
    span, done = t["span"], t["done"]
    if span["first"] and span["last"] and done:
        active = max((span["last"] - span["first"]).total_seconds(), 1e-3)
        print(
            f"\ncells analysed: {done} ({done / active:.1f} cells/s while analysing, "
            f"{done / (time.time() - started_at):.1f} cells/s from the start of the load to the last result)"
        )
    print(
        f"images stored: {t['total']} in {len(case_ids)} cases; done {done}, failed {t['failed']}, "
        f"still pending {t['left']}; files missing {t['missing_files']}"
    )
    print(
        f"images with more than one prediction: {t['twice']}; with more than one audited result: "
        f"{t['twice_audited']}"
    )
    audit_ok = _audit_intact()
    ok = (
        t["total"] > 0
        and done == t["total"]
        and t["missing_files"] == 0
        and t["twice"] == 0
        and t["twice_audited"] == 0
        and t["predictions"] == t["total"]
        and audit_ok
    )
    print("CHECKS:", "passed" if ok else "FAILED")
    return ok


def main(argv=None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="malaria-load-"))
    env = stack_env(args, workdir / "media")
    fresh_services(args)
    manage(env, "migrate", "--no-input")
    manage(env, "collectstatic", "--no-input")  # DEBUG off: the manifest storage needs it
    manage(env, "setup_platform")
    manage(env, "install_default_model")
    site = int(
        re.search(
            r"SITE (\d+)",
            manage(
                env,
                "shell",
                "-c",
                SETUP.format(
                    clinicians=args.clinicians, reviewers=args.reviewers, password=PASSWORD
                ),
            ),
        )[1]
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    processes = start_stack(args, env, port, workdir)
    sys.path.insert(0, str(REPO))
    try:
        wait_ready(base)
        print(
            f"stack up: gunicorn ({args.web_workers} processes) + 2 workers on {base}; "
            f"{args.clinicians} clinicians x {args.cells} cells, {args.reviewers} reviewers, "
            f"{args.duration:.0f} s"
        )
        started_wall = time.time()
        started = time.monotonic()
        recorder = Recorder(args.max_requests, started + args.duration)
        threads = [
            threading.Thread(target=clinician, args=(Client(base, recorder), i, site, args.cells))
            for i in range(args.clinicians)
        ] + [
            threading.Thread(target=reviewer, args=(Client(base, recorder), i))
            for i in range(args.reviewers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        report_requests(recorder, time.monotonic() - started)
        ok = verify(env, recorder.uploaded, args.drain_timeout, started_wall)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
    print(f"logs: {workdir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
