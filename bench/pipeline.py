"""End-to-end throughput and latency: upload over HTTP -> worker -> result visible on the case page.

    python bench/pipeline.py [--n 1000] [--singles 20] [--chunk 100] [--keep]

Starts its own platform in a temporary folder — gunicorn (2 processes) for the web, one Celery
worker — on the embedded default (SQLite + filesystem broker), or on PostgreSQL/Redis when
--database-url / --broker-url are given, with the shipped default model. Then, as a clinician
would through the upload view:
  batch    upload N cell images in chunks of --chunk files per request and wait until the case
           status endpoint reports every image done. End-to-end cells/s = N / (last result
           committed - first upload request started), and each image's latency from the start of
           its upload request to its result being committed (processed_at, read from the DB);
  singles  on the idle system, upload one image at a time and poll the case status endpoint every
           50 ms until it shows the result: p50/p95 latency from upload to visible result.
Images: real NIH cells when $MALARIA_DATA_DIR/nih_cells exists (default ../shared/data), else
synthetic cells. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.celery_worker import ALONE, celery_worker_command  # noqa: E402

PASSWORD = "malaria-demo"


def load_cells(n: int, seed: int = 0) -> tuple[list[tuple[str, bytes]], str]:
    data_dir = Path(os.environ.get("MALARIA_DATA_DIR", ROOT.parent / "shared" / "data"))
    folder = data_dir / "nih_cells"
    if folder.is_dir():
        files = sorted(folder.glob("*/*.png"))
        chosen = random.Random(seed).sample(files, min(n, len(files)))
        return [(f"{k}-{f.name}", f.read_bytes()) for k, f in enumerate(chosen)], str(folder)
    from classifier.synthetic import make_cell, png_bytes

    rng = np.random.default_rng(seed)
    cells = [png_bytes(make_cell(rng, k % 2 == 0, int(rng.integers(100, 160)))) for k in range(n)]
    return [(f"synthetic-{k}.png", data) for k, data in enumerate(cells)], "synthetic cells"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class Platform:
    """The web server and one worker, in child processes, on a private var folder."""

    def __init__(
        self, var_dir: Path, database_url: str, broker_url: str, model_dir: str, concurrency: int
    ) -> None:
        self.model_dir = model_dir
        self.concurrency = concurrency
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DEBUG": "true",
            "MALARIA_VAR_DIR": str(var_dir),
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": broker_url,
            "CELERY_QUEUE": f"bench-{self.port}",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        self.logs = var_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.processes: list[subprocess.Popen] = []

    def manage(self, *args: str) -> None:
        python = sys.executable
        subprocess.run(
            [python, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def spawn(self, name: str, *command: str) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        self.processes.append(
            subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        )

    def start(self) -> None:
        self.manage("migrate", "--no-input")
        self.manage("setup_platform")
        self.manage("install_default_model", *(["--dir", self.model_dir] if self.model_dir else []))
        bin_dir = Path(sys.executable).parent
        self.spawn(
            "web",
            str(bin_dir / "gunicorn"),
            "malariaweb.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            "2",
            "--timeout",
            "300",
        )
        self.spawn(
            "worker", *celery_worker_command(self.env["CELERY_QUEUE"], "--concurrency=1", *ALONE)
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/login/", timeout=10).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.3)
        raise RuntimeError(f"the web server did not start; see {self.logs}")

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


class Client:
    """A logged-in browser session: the same endpoints the case page uses."""

    def __init__(self, base: str, username: str, password: str, site_id: int) -> None:
        self.base = base
        self.site_id = site_id
        self.session = requests.Session()
        page = self.session.get(f"{base}/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        response = self.session.post(
            f"{base}/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token},
            headers={"Referer": f"{base}/login/"},
        )
        if "/login/" in response.url:
            raise RuntimeError("login failed")
        self.headers = {"X-CSRFToken": self.session.cookies["csrftoken"], "Referer": base}

    def create_case(self, identifier: str) -> int:
        patient = self.session.post(
            f"{self.base}/api/patients/",
            json={"site": self.site_id, "identifier": identifier, "sex": "U"},
            headers=self.headers,
        )
        patient.raise_for_status()
        case = self.session.post(
            f"{self.base}/api/cases/", json={"patient": patient.json()["id"]}, headers=self.headers
        )
        case.raise_for_status()
        return case.json()["id"]

    def upload(self, case_id: int, files: list[tuple[str, bytes]]) -> dict:
        response = self.session.post(
            f"{self.base}/cases/{case_id}/upload",
            files=[("files", (name, data, "image/png")) for name, data in files],
            headers={**self.headers, "Accept": "application/json"},
        )
        response.raise_for_status()
        return response.json()

    def status(self, case_id: int) -> dict:
        return self.session.get(f"{self.base}/cases/{case_id}/status.json").json()


def use_platform_database(env: dict) -> None:
    """Point this process's Django at the platform's database (to read ids and timestamps)."""
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "MALARIA_VAR_DIR", "DEBUG")})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "malariaweb.settings")
    import django

    django.setup()


def processed_times(image_ids) -> dict[int, float]:
    """When each image's result was committed (processed_at, read from the database)."""
    from cases.models import Image

    rows = Image.objects.filter(pk__in=list(image_ids)).values_list("pk", "processed_at")
    return {pk: done.astimezone(UTC).timestamp() for pk, done in rows if done is not None}


def run_batch(client: Client, cells, chunk: int) -> tuple[float, dict[int, float], int]:
    """Upload in chunks and wait until the case page reports all done; returns the start time."""
    case_id = client.create_case(f"BENCH-BATCH-{int(time.time())}")
    started: dict[int, float] = {}
    rejected = 0
    t0 = time.time()
    for start in range(0, len(cells), chunk):
        sent = time.time()
        outcome = client.upload(case_id, cells[start : start + chunk])
        rejected += len(outcome["rejected"])
        started.update({item["id"]: sent for item in outcome["stored"]})
    upload_s = time.time() - t0
    print(f"batch: uploaded {len(started)} cells in {upload_s:.1f}s", flush=True)
    while True:
        status = client.status(case_id)
        if status["done"]:
            break
        counts = status["counts"]
        print(f"  done {counts.get('done', 0)}/{len(started)}", flush=True)
        time.sleep(1.0)  # a coarse poll: the end time comes from the database, not from here
    return t0, started, rejected


def run_singles(client: Client, cells, count: int) -> list[float]:
    case_id = client.create_case(f"BENCH-SINGLE-{int(time.time())}")
    latencies = []
    for name, data in cells[:count]:
        t0 = time.time()
        client.upload(case_id, [(name, data)])
        while not client.status(case_id)["done"]:
            time.sleep(0.05)
        latencies.append(time.time() - t0)
        time.sleep(0.5)  # idle system between uploads
    return latencies


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="cells in the batch run")
    parser.add_argument("--singles", type=int, default=20, help="single-image uploads")
    parser.add_argument("--chunk", type=int, default=100, help="files per upload request")
    parser.add_argument("--database-url", default="", help="default: SQLite in the temp folder")
    parser.add_argument("--broker-url", default="", help="default: filesystem broker")
    parser.add_argument(
        "--model-dir",
        default="",
        help="a model folder with manifest.json (default: the shipped classifier/default_model)",
    )
    parser.add_argument("--concurrency", type=int, default=1, help="worker processes (one worker)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return parser.parse_args()


def measure(platform: Platform, cells, args: argparse.Namespace) -> dict:
    """Against a started platform: single uploads on an idle system, then the batch run."""
    use_platform_database(platform.env)
    from cases.models import Site

    site = Site.objects.filter(members__username="clinician").first()
    client = Client(platform.url, "clinician", PASSWORD, site.pk)
    # Warm-up: the worker loads TensorFlow and the model on its first batch.
    warm_case = client.create_case("BENCH-WARMUP")
    client.upload(warm_case, cells[-1:])
    while not client.status(warm_case)["done"]:
        time.sleep(0.2)
    singles = run_singles(client, cells[args.n :], args.singles)
    t0, started, rejected = run_batch(client, cells[: args.n], args.chunk)
    done = processed_times(started)
    return {
        "singles": singles,
        "started": started,
        "rejected": rejected,
        "batch_latencies": [done[pk] - started[pk] for pk in done],
        # From the first upload request to the last result committed (visible to the page).
        "elapsed": max(done.values()) - t0,
    }


def figures_of(run: dict, source: str, database_url: str, args: argparse.Namespace) -> dict:
    singles, latencies, elapsed = run["singles"], run["batch_latencies"], run["elapsed"]
    return {
        "n": len(run["started"]),
        "rejected": run["rejected"],
        "images": source,
        "database": database_url.split(":")[0],
        "broker": args.broker_url.split(":")[0] or "filesystem",
        "end_to_end_cells_per_s": round(len(run["started"]) / elapsed, 1),
        "batch_seconds": round(elapsed, 2),
        "batch_latency_p50_s": round(statistics.median(latencies), 2),
        "batch_latency_p95_s": round(percentile(latencies, 95), 2),
        "single_latency_p50_s": round(statistics.median(singles), 3),
        "single_latency_p95_s": round(percentile(singles, 95), 3),
        "singles": len(singles),
        "worker_concurrency": args.concurrency,
    }


def main() -> None:
    args = parse_args()
    var_dir = Path(tempfile.mkdtemp(prefix="malaria-bench-"))
    database_url = args.database_url or f"sqlite:///{var_dir / 'db.sqlite3'}"
    cells, source = load_cells(args.n + args.singles)
    platform = Platform(var_dir, database_url, args.broker_url, args.model_dir, args.concurrency)
    try:
        platform.start()
        run = measure(platform, cells, args)
    finally:
        platform.stop()
        if not args.keep:
            shutil.rmtree(var_dir, ignore_errors=True)

    figures = figures_of(run, source, database_url, args)
    print(
        f"batch of {figures['n']} cells: {figures['end_to_end_cells_per_s']} cells/s end to end, "
        f"latency p50 {figures['batch_latency_p50_s']} s, p95 {figures['batch_latency_p95_s']} s"
    )
    print(
        f"single image on an idle system: p50 {figures['single_latency_p50_s']} s, "
        f"p95 {figures['single_latency_p95_s']} s over {figures['singles']} uploads"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
