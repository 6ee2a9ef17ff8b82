"""Fixtures of tests/cases. The web-layer helpers live in web_helpers.py; `enqueued` is shared here."""

from tests.cases.web_helpers import enqueued  # noqa: F401
