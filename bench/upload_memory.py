"""Peak memory of the web process while it handles one upload request.

    python bench/upload_memory.py [--scenario big-file|zip-fields|huge-request|all] [--keep DIR]

Each scenario runs in a fresh child process: Django set up against a migrated SQLite copy, a
logged-in clinician with a case, then ONE request through the real WSGI handler (the page's
upload endpoint, session cookie and CSRF header, JSON answer), its body streamed from a file the
parent wrote beforehand so the request body itself costs the child no memory. The child resets
its peak-RSS counter (/proc/self/clear_refs) just before the request and reports VmHWM after it,
so the figure is what the request cost, not what start-up cost. Scenarios:
  big-file      one 286 MB file (refused: over UPLOAD_MAX_FILE_MB);
  zip-fields    a zip (3.6 MB) of 20 PNG fields of 6000x6000 pixels;
  huge-request  a request that declares 2 GB (its body is generated as it is read).
The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOUNDARY = "benchboundary7MA4YWxkTrZu0gW"
CSRF = "a" * 32
SCENARIOS = ("big-file", "zip-fields", "huge-request")


def _part_head(name: str, filename: str, content_type: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; '
        f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'
    ).encode()


def _form_field(name: str, value: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
    ).encode()


def write_body(path: Path, filename: str, content_type: str, write_content) -> None:
    with open(path, "wb") as out:
        out.write(_form_field("kind", "auto"))
        out.write(_part_head("files", filename, content_type))
        write_content(out)
        out.write(f"\r\n--{BOUNDARY}--\r\n".encode())


def big_file_body(path: Path) -> None:
    def content(out):
        chunk = os.urandom(1024 * 1024)
        out.write(b"\x89PNG\r\n\x1a\n")
        for _ in range(286):
            out.write(chunk)

    write_body(path, "big.png", "image/png", content)


def zip_fields_body(path: Path) -> None:
    import numpy as np
    from PIL import Image as PILImage

    rng = np.random.default_rng(0)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for n in range(20):
            field = np.full((6000, 6000, 3), (225, 205, 215), np.uint8)
            field[n * 200 : n * 200 + 150, 100:250] = (150, 60, 110)  # one dark "cell" each
            # A patch of camera noise, so each PNG weighs about 180 kB as real fields do.
            field[3000:3200, 3000:3300] = rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)
            buffer = io.BytesIO()
            PILImage.fromarray(field).save(buffer, format="PNG")
            zf.writestr(f"fields/field-{n:02d}.png", buffer.getvalue())
    write_body(path, "fields.zip", "application/zip", lambda out: out.write(archive.getvalue()))


class GeneratedBody(io.RawIOBase):
    """A multipart body of `size` bytes produced as it is read (never held or written whole)."""

    def __init__(self, size: int):
        self.head = _form_field("kind", "auto") + _part_head("files", "huge.zip", "application/zip")
        self.tail = f"\r\n--{BOUNDARY}--\r\n".encode()
        self.size, self.pos = size, 0
        self.chunk = b"\0" * (1024 * 1024)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        remaining = self.size - self.pos
        if remaining <= 0:
            return 0
        n = min(len(buffer), remaining, len(self.chunk))
        if self.pos < len(self.head):
            piece = self.head[self.pos : self.pos + n]
        elif remaining <= len(self.tail):
            piece = self.tail[len(self.tail) - remaining :][:n]
        else:
            piece = self.chunk[: min(n, remaining - len(self.tail))]
        buffer[: len(piece)] = piece
        self.pos += len(piece)
        return len(piece)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _environ(path: str, size: int, body, session: str) -> dict:
    """A WSGI environ for one multipart POST, as gunicorn would pass it."""
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "CONTENT_TYPE": f"multipart/form-data; boundary={BOUNDARY}",
        "CONTENT_LENGTH": str(size),
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "localhost",
        "HTTP_ACCEPT": "application/json",
        "HTTP_COOKIE": f"sessionid={session}; csrftoken={CSRF}",
        "HTTP_X_CSRFTOKEN": CSRF,
        "wsgi.input": body,
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def child(scenario: str, workdir: Path) -> dict:
    """Runs in a fresh interpreter: one request, its peak RSS."""
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "malariaweb.settings"
    import django

    django.setup()
    from django.contrib.auth.models import Group, User
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import Client

    from cases.intake import services
    from cases.models import Site

    site = Site.objects.create(name="Bench lab", code=f"b{os.getpid()}")
    user = User.objects.create_user(username=f"bench{os.getpid()}", password="x-bench-123")
    user.groups.add(Group.objects.get_or_create(name="clinician")[0])
    site.members.add(user)
    patient = services.patient_create(site=site, identifier=f"B-{os.getpid()}", by=user)
    case = services.case_create(patient=patient, by=user)
    client = Client()
    client.force_login(user)
    session = client.cookies["sessionid"].value
    handler = WSGIHandler()

    if scenario == "huge-request":
        size = 2 * 1024**3
        body = io.BufferedReader(GeneratedBody(size), buffer_size=1024 * 1024)
    else:
        path = workdir / f"{scenario}.body"
        size = path.stat().st_size
        body = open(path, "rb")  # noqa: SIM115 - closed below
    environ = _environ(f"/cases/{case.pk}/upload", size, body, session)
    import gc

    gc.collect()
    before_kb = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    started = time.perf_counter()
    statuses: list[str] = []
    response = handler(environ, lambda status, headers, exc_info=None: statuses.append(status))
    answer = b"".join(response)
    seconds = time.perf_counter() - started
    peak_kb = _status_kb("VmHWM")
    bytes_read = body.tell() if scenario != "huge-request" else None
    body.close()
    return {
        "scenario": scenario,
        "status": statuses[0] if statuses else None,
        "answer": answer[:300].decode("utf-8", "replace"),
        "seconds": round(seconds, 2),
        "body_mb": round(size / 1048576, 1),
        "rss_before_mb": round(before_kb / 1024, 1),
        "rss_peak_mb": round(peak_kb / 1024, 1),
        "request_cost_mb": round((peak_kb - before_kb) / 1024, 1),
        "bytes_read": bytes_read,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="all", choices=[*SCENARIOS, "all"])
    parser.add_argument("--keep", help="keep request bodies and the database in this folder")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.keep))))
        return
    workdir = Path(args.keep or tempfile.mkdtemp(prefix="upload-memory-"))
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DEBUG": "true",
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
        "MEDIA_ROOT": str(workdir / "media"),
        "MALARIA_VAR_DIR": str(workdir / "var"),
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "LOG_LEVEL": "WARNING",
    }
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "-v", "0"], env=env, check=True
    )
    builders = {"big-file": big_file_body, "zip-fields": zip_fields_body}
    scenarios = SCENARIOS if args.scenario == "all" else (args.scenario,)
    results = []
    for scenario in scenarios:
        if scenario in builders and not (workdir / f"{scenario}.body").exists():
            builders[scenario](workdir / f"{scenario}.body")
        out = subprocess.run(
            [sys.executable, __file__, "--child", scenario, "--keep", str(workdir)],
            env=env,
            capture_output=True,
            text=True,
        )
        if out.returncode:
            print(out.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"{scenario}: the child failed")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(result)
        print(
            f"{scenario:13s} {result['status']:24s} body {result['body_mb']:7.1f} MB  "
            f"peak RSS {result['rss_peak_mb']:7.1f} MB (+{result['request_cost_mb']:.1f} MB "
            f"over {result['rss_before_mb']:.1f})  {result['seconds']:.2f} s"
        )
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
