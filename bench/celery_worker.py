"""The command line of a real `celery worker` process, in one place for everything that starts
one: the load test (bench/load.py), the pipeline benchmark (bench/pipeline.py) and the tests that
run real workers (tests/integration, tests/ops/test_s3.py).

Plain Python with no project imports, so a benchmark can import it before Django is set up.
"""

from __future__ import annotations

import sys

# A worker on its own: no gossip, mingle or event heartbeats with other workers, so a test or a
# benchmark starts quickly and is not slowed by workers it does not know about.
ALONE = ("--without-gossip", "--without-mingle", "--without-heartbeat")


def celery_worker_command(
    queue: str, *options: str, loglevel: str = "info", name: str | None = None
) -> list[str]:
    """`python -m celery -A malariaweb worker` consuming `queue`, then `options` as given.

    `name` becomes the node name `<name>@%h` (two workers on one host need different names).
    """
    command = [sys.executable, "-m", "celery", "-A", "malariaweb", "worker"]
    command += [f"--loglevel={loglevel}", "-Q", queue]
    if name:
        command += ["-n", f"{name}@%h"]
    return [*command, *options]
