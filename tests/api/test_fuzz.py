"""Schemathesis against the live schema on 127.0.0.1: every operation, generated requests as a
superuser (a member of every site, holding every role, so requests reach past the permission
checks), and no 500 and no answer that contradicts the schema (status, content type, headers,
body). Bounded: FUZZ_EXAMPLES requests per operation (about a minute in all)."""

import os

import pytest
import schemathesis
from django.contrib.staticfiles.handlers import StaticFilesHandler as _StaticFilesHandler
from django.test.testcases import LiveServerThread
from hypothesis import HealthCheck, Phase, given, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import make_user

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
pytestmark = pytest.mark.slow


def fuzz(operation, base_url: str, headers: dict, counter: list[int]) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def run(case) -> None:
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        counter[0] += 1
        case.validate_response(response, checks=CHECKS)

    run()


@pytest.fixture
def server(transactional_db, settings):
    """A live server on 127.0.0.1, started after the test settings are in place (its
    middleware reads them when it starts: no HTTPS redirect, no throttling)."""
    settings.API_THROTTLE_RATES = {"user": "100000/minute", "anon": "100000/minute"}
    thread = LiveServerThread("127.0.0.1", _StaticFilesHandler, port=0)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    if thread.error:
        raise thread.error
    yield f"http://127.0.0.1:{thread.port}"
    thread.terminate()


def test_the_live_api_matches_its_schema(server, world, enqueued):
    admin = make_user("fuzzer", None, [world.site])
    admin.is_superuser = admin.is_staff = True
    admin.save()
    token = Token.objects.create(user=admin)
    schema = schemathesis.openapi.from_url(f"{server}/api/v1/schema/?format=json")
    headers = {"Authorization": f"Token {token.key}"}
    counter = [0]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 40
    for operation in operations:
        fuzz(operation, server, headers, counter)
    print(f"schemathesis: {counter[0]} requests over {len(operations)} operations")
    assert counter[0] >= len(operations)
