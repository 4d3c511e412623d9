"""schemathesis against the served OpenAPI schema: no server error, no response outside the schema.

A bounded run (``MAX_EXAMPLES`` generated requests per operation, valid and invalid
ones) against the real uvicorn server on 127.0.0.1, API keys on and the key sent,
so the model runs too. Five checks: ``not_a_server_error`` (no 5xx), and the
status code, content type, headers and body of every response conforming to the
schema. (``positive_data_acceptance`` is left out: "binary" in the schema admits
bytes that are not an image, which the service rightly answers 400.)
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.main import create_app
from tests.service.conftest import IsolatedSettings, Server

KEY = "fuzz-key"
MAX_EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzzed(serve) -> Iterator[Server]:
    with serve(api_keys=[KEY], max_body_bytes=256 * 1024, max_pixels=1_000_000) as server:
        yield server


# The schema is the app's own document, built without a model (create_app loads nothing);
# test_the_fuzzed_schema_is_the_served_one checks it is what the server sends. (Loading it from the
# running server through schemathesis.pytest.from_fixture fails under pytest 9: no Function._nodeid.)
SCHEMA = create_app(IsolatedSettings(checkpoint="unused", api_keys=[KEY])).openapi()
schema = schemathesis.openapi.from_dict(SCHEMA)


def test_the_fuzzed_schema_is_the_served_one(fuzzed):
    assert httpx.get(f"{fuzzed.url}/openapi.json").json() == SCHEMA


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
)
def test_every_operation_answers_within_its_schema(case, fuzzed):
    case.call_and_validate(base_url=fuzzed.url, headers={"X-API-Key": KEY}, checks=CHECKS)
