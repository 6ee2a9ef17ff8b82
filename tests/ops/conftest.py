"""Real worker processes for the ops tests: the integration suite's fixtures, shared."""

from tests.integration.conftest import live_model, start_worker, worker_env  # noqa: F401
