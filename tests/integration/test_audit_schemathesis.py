"""Schemathesis against the running audit service's OpenAPI schema (real MongoDB-compatible
server and Kafka): no server error, no response that breaks the schema or an undeclared status,
invalid input refused, valid input accepted.

Run by hand with a random seed:
    uv run st run http://127.0.0.1:8085/api/v1/openapi.json -H "Authorization: Bearer $TOKEN" --checks all
"""

from __future__ import annotations

import asyncio

import pytest

from .schemathesis_support import schemathesis, token_for

pytestmark = pytest.mark.integration

# What JSON Schema cannot say, told to the fuzzer: `since` must be before `until` (422 otherwise).
CONFIG = """
[[operations]]
include-path-regex = "^/api/v1/audit/(messages|analytics/.*)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]
"""


async def test_audit_endpoints_conform_to_their_schema(pipeline, tmp_path) -> None:
    result = await asyncio.to_thread(schemathesis, pipeline.url("audit"), token_for(pipeline), tmp_path,
                                     config=CONFIG)
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-2000:]
    assert "API Operations" in result.stdout
    print(result.stdout[result.stdout.rfind("API Operations"):])  # shown with -rP: operations and test cases
