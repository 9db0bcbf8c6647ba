"""Schemathesis against the running router's OpenAPI schema (real PostgreSQL and Kafka):
no server error, no response that breaks the schema, invalid input refused, valid
input accepted, auth enforced, links (create → get/update/delete) honoured.

Run by hand with a random seed:
    uv run st run http://127.0.0.1:8081/api/v1/openapi.json -H "Authorization: Bearer $TOKEN" --checks all
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .tenancy_support import Api, pipeline_router

pytestmark = pytest.mark.integration

ST = str(Path(sys.executable).parent / "st")


@pytest.fixture(scope="module")
async def api(pipeline) -> AsyncIterator[Api]:
    async with pipeline_router(pipeline) as running:
        yield running


def schemathesis(url: str, token: str, paths: list[str], workdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ST, "run", f"{url}/api/v1/openapi.json", "--checks", "all", "--max-examples", "12", "--seed", "20261129",
         "--workers", "1", "--request-timeout", "30", "-H", f"Authorization: Bearer {token}", *paths],
        cwd=workdir, capture_output=True, text=True, timeout=900)


async def test_tenant_endpoints_conform_to_their_schema(pipeline, api, tmp_path) -> None:
    # An organization of its own: the fuzzer may change anything it can reach.
    _, admin = await api.new_organization("fuzz")
    result = await asyncio.to_thread(schemathesis, pipeline.url("router"), admin,
                                     ["--exclude-path-regex", "/organizations"], tmp_path)
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-2000:]
    assert "API Operations" in result.stdout
    print(result.stdout[result.stdout.rfind("API Operations"):])  # shown with -rP: operations and test cases


async def test_organization_endpoints_conform_to_their_schema(pipeline, api, tmp_path) -> None:
    result = await asyncio.to_thread(schemathesis, pipeline.url("router"), await api.platform_token(),
                                     ["--include-path-regex", "/organizations"], tmp_path)
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-2000:]
    assert "API Operations" in result.stdout
    print(result.stdout[result.stdout.rfind("API Operations"):])  # shown with -rP: operations and test cases
