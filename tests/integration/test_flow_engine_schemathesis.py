"""Schemathesis against the running flow engine's OpenAPI schema (real PostgreSQL and Kafka):
no server error, no response that breaks the schema or an undeclared status, invalid input
refused, valid input accepted.

Run by hand with a random seed:
    uv run st run http://127.0.0.1:8082/api/v1/openapi.json -H "Authorization: Bearer $TOKEN" --checks all
"""

from __future__ import annotations

import asyncio

import pytest

from .schemathesis_support import schemathesis, token_for

pytestmark = pytest.mark.integration

# What JSON Schema cannot say about two operations, told to the fuzzer:
# - validating or publishing a draft that is not a sound flow is a 422 by design (the draft is free-form);
# - a draft is any JSON object, and a schema cannot say "no NUL in any string of it" short of a recursive
#   one: the fuzzer sends none there. (The API refuses NUL anywhere, tested in test_api_input_limits;
#   the named string fields' schemas say it, and are fuzzed with NUL.)
CONFIG = """
[[operations]]
include-path-regex = "^/api/v1/flows/[{]flow_id[}]/(validate|publish)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

[[operations]]
include-name = ["POST /api/v1/flows", "PATCH /api/v1/flows/{flow_id}"]
generation.allow-x00 = false
"""


async def test_flow_engine_endpoints_conform_to_their_schema(pipeline, tmp_path) -> None:
    # An organization of its own (the token names it): the fuzzer may change anything it can reach.
    result = await asyncio.to_thread(schemathesis, pipeline.url("flow-engine"), token_for(pipeline), tmp_path,
                                     config=CONFIG)
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-2000:]
    assert "API Operations" in result.stdout
    print(result.stdout[result.stdout.rfind("API Operations"):])  # shown with -rP: operations and test cases
