"""A PostgreSQL cluster of a test's own, to stop and start as a database outage, and the seeding
of a platform into it (run in a subprocess: this test process stays on the shared test database).

Never the shared PostgreSQL on 5432: other test runs use it."""

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

DATABASE = "malaria_outage"


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder with initdb, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _version(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


def free_port(preferred: int) -> int:
    for port in [preferred, *range(preferred + 1, preferred + 50)]:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port for the private PostgreSQL")


class PrivatePostgres:
    """initdb into a temporary folder, served on 127.0.0.1:`port` (trust auth, user postgres).

    Run as the postgres user when this process is root (PostgreSQL refuses to run as root)."""

    def __init__(self, bin_dir: Path, port: int) -> None:
        self.bin, self.port = bin_dir, port
        self.folder = Path(tempfile.mkdtemp(prefix="malaria-outage-pg-"))
        self.data = self.folder / "data"
        self.url = f"postgres://postgres@127.0.0.1:{port}/{DATABASE}"
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.folder, "postgres")

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def create(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def stop(self) -> None:
        """Shut down as an operator's restart does: every client is disconnected at once."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    @property
    def log(self) -> Path:
        return self.folder / "postgres.log"

    def dsn(self, database: str = DATABASE) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def query(self, sql: str, *params):
        with psycopg.connect(self.dsn(), connect_timeout=5) as conn:
            return conn.execute(sql, params).fetchall()

    def destroy(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass  # already stopped
        shutil.rmtree(self.folder, ignore_errors=True)


def seed_in_subprocess(env: dict, model_path: Path, cells: int) -> dict:
    """Migrate the database `env` names, register the model and upload `cells` cells through the
    upload service (its messages go to `env`'s broker); returns {"case": id, "images": [ids]}."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "tests.integration.private_postgres", str(model_path), str(cells)],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode:
        raise AssertionError(f"seeding failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    seeded = json.loads(done.stdout.strip().splitlines()[-1])
    seeded["seconds"] = time.monotonic() - started
    return seeded


def _seed(model_path: str, cells: int) -> dict:
    import numpy as np
    from django.core.management import call_command

    from cases.intake import services
    from cases.models import Site
    from classifier.synthetic import make_cell, png_bytes
    from tests.conftest import make_user, register_model

    call_command("migrate", verbosity=0)
    site = Site.objects.create(name="Outage Lab", code="outage")
    clinician = make_user("outage-clin", "clinician", [site])
    patient = services.patient_create(site=site, identifier="P-OUT", by=clinician)
    case = services.case_create(patient=patient, by=clinician)
    register_model(model_path)
    rng = np.random.default_rng(15)
    files = [(f"o{i}.png", png_bytes(make_cell(rng, i % 3 == 0, 90))) for i in range(cells)]
    stored = services.images_add(case=case, files=files, by=clinician).stored
    return {"case": case.pk, "images": [img.pk for img in stored]}


if __name__ == "__main__":
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "malariaweb.settings")
    django.setup()
    print(json.dumps(_seed(sys.argv[1], int(sys.argv[2]))))
