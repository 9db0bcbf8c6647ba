"""The request guard every service app is built with: 413 for oversized bodies, 422 for input
PostgreSQL cannot hold, structured errors, documented in the OpenAPI schema."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Path, Request
from pydantic import BaseModel

from pytake_devstack.fake_records import FakeRecordProducer
from pytake_plumbing.bounds import NO_NUL, PG_INT_MAX, Limit, Offset, PgPositiveInt
from pytake_plumbing.request_guard import body_limit, json_problem
from pytake_plumbing.service_app import build_service_app

LIMIT = 4096


class Note(BaseModel):
    text: str
    data: dict[str, Any] | None = None


class Shown(BaseModel):
    name: str


def make_app(**options: Any) -> FastAPI:
    app = build_service_app("test", FakeRecordProducer(), max_body_bytes=LIMIT, **options)

    @app.post("/notes")
    async def create(note: Note) -> dict[str, Any]:
        return note.model_dump()

    @app.post("/raw")
    async def raw(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @app.post("/small", dependencies=[Depends(body_limit(100))])
    async def small(note: Note) -> dict[str, Any]:
        return note.model_dump()

    @app.get("/items")
    async def items(limit: Limit = 50, offset: Offset = 0, q: str | None = None) -> dict[str, Any]:
        return {"limit": limit, "offset": offset, "q": q}

    @app.get("/items/{name}", response_model=Shown)
    async def item(name: str) -> Shown:
        return Shown(name=name)

    @app.delete("/items/{name}", status_code=204)
    async def delete_item(name: str) -> None:
        return None

    @app.get("/versions/{version}")
    async def version(version: Annotated[PgPositiveInt, Path()]) -> dict[str, int]:
        return {"version": version}

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app()), base_url="http://test") as client:
        yield client


def refused(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    return str(error["message"])


def post_json(client: httpx.AsyncClient, path: str, raw: str | bytes, **headers: str) -> Any:
    return client.post(path, content=raw, headers={"Content-Type": "application/json", **headers})


# --- NUL characters and JSON PostgreSQL cannot store ------------------------------------------


async def test_nul_in_the_path_or_query_is_422(client) -> None:
    assert "path" in refused(await client.get("/items/a%00b"), 422, "validation_error")
    assert "query" in refused(await client.get("/items?q=a%00b"), 422, "validation_error")
    assert "query" in refused(await client.get("/items", params={"q": "\x00"}), 422, "validation_error")
    assert "query" in refused(await client.get("/items?unknown=%00"), 422, "validation_error")
    # %2500 is the text "%00", not a NUL.
    assert (await client.get("/items?q=%2500")).json()["q"] == "%00"
    assert (await client.get("/items/a%2500b")).json() == {"name": "a%00b"}


@pytest.mark.parametrize("raw", [
    '{"text": "a\\u0000b"}',
    '{"text": "ok", "data": {"deep": [{"x": "\\u0000"}]}}',
    '{"text": "ok", "data": {"key\\u0000": 1}}',
    '{"text": "lone \\ud800 surrogate"}',
    '{"text": "ok", "data": {"n": NaN}}',
    '{"text": "ok", "data": {"n": -Infinity}}',
], ids=["nul", "nested nul", "nul in a key", "lone surrogate", "nan", "infinity"])
async def test_json_postgresql_cannot_store_is_422(client, raw) -> None:
    refused(await post_json(client, "/notes", raw), 422, "validation_error")
    refused(await post_json(client, "/raw", raw), 422, "validation_error")  # whatever the route does with it


async def test_nul_in_json_of_a_json_media_type_or_without_content_type_is_422(client) -> None:
    raw = '{"text": "a\\u0000b"}'
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        refused(await post_json(client, "/notes", raw, **{"Content-Type": content_type}), 422, "validation_error")
    refused(await client.post("/raw", content=raw), 422, "validation_error")


async def test_an_escaped_backslash_before_u0000_is_text(client) -> None:
    text = "C:\\u0000dir \\\\u0000"  # backslashes, then the letters u0000
    raw = json.dumps({"text": text})
    assert "\\\\u0000" in raw
    response = await post_json(client, "/notes", raw)
    assert response.status_code == 200, response.text
    assert response.json()["text"] == text


async def test_escaped_surrogate_pairs_and_other_text_pass(client) -> None:
    raw = '{"text": "\\ud83d\\ude00 caf\\u00e9 \\u0001", "data": {"n": 1e308, "big": 123456789012345678901234567890}}'
    response = await post_json(client, "/notes", raw)
    assert response.status_code == 200, response.text
    assert response.json()["text"] == "\U0001F600 café \x01"


async def test_what_is_not_json_is_left_to_the_framework(client) -> None:
    # Malformed JSON: FastAPI's own 422; a body of another media type: the route's business.
    malformed = await post_json(client, "/notes", '{"text": ')
    assert malformed.status_code == 422 and malformed.json()["error"]["code"] == "validation_error"
    plain = await client.post("/raw", content="a\x00b", headers={"Content-Type": "text/plain"})
    assert plain.json() == {"bytes": 3}


def test_json_problem_walks_deep_documents_without_recursion() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    assert json_problem(deep.encode()) is None  # json itself gives up: the framework reports it
    nested: Any = "\x00"
    for _ in range(500):
        nested = [nested]
    assert json_problem(json.dumps(nested).encode()) is not None


# --- sizes -----------------------------------------------------------------------------------


async def test_a_body_over_the_limit_is_413_declared_or_streamed(client) -> None:
    body = json.dumps({"text": "x" * LIMIT}).encode()
    assert "4096 bytes" in refused(await post_json(client, "/notes", body), 413, "payload_too_large")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while reading
        for start in range(0, len(body), 512):
            yield body[start:start + 512]

    refused(await client.post("/notes", content=chunks(), headers={"Content-Type": "application/json"}),
            413, "payload_too_large")


async def test_a_body_at_the_limit_passes_whole(client) -> None:
    body = json.dumps({"text": ""}).encode()
    body = body[:-2] + b"x" * (LIMIT - len(body)) + b'"}'
    assert len(body) == LIMIT

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start:start + 1000]

    response = await client.post("/raw", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.json() == {"bytes": LIMIT}


async def test_a_route_may_set_a_tighter_limit(client) -> None:
    assert (await client.post("/small", json={"text": "short"})).status_code == 200
    assert "100 bytes" in refused(await client.post("/small", json={"text": "x" * 200}), 413, "payload_too_large")


async def test_excluded_requests_skip_the_guard() -> None:
    app = make_app(guard_exclude=lambda scope: scope["path"] == "/raw")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        response = await post_json(client, "/raw", json.dumps({"text": "\x00" + "x" * LIMIT}))
        assert response.status_code == 200
        refused(await post_json(client, "/notes", '{"text": "\\u0000"}'), 422, "validation_error")


# --- bounded numbers -------------------------------------------------------------------------


async def test_numbers_beyond_what_a_column_holds_are_422(client) -> None:
    for path in (f"/versions/{PG_INT_MAX + 1}", "/versions/0", "/versions/99999999999999999999",
                 "/items?offset=99999999999999999999", "/items?offset=1000001", "/items?limit=201", "/items?limit=0"):
        refused(await client.get(path), 422, "validation_error")
    assert (await client.get(f"/versions/{PG_INT_MAX}")).json() == {"version": PG_INT_MAX}
    assert (await client.get("/items?offset=1000000&limit=200")).json()["offset"] == 1_000_000


# --- the schema says so, and 405 names every method -------------------------------------------


def test_every_operation_documents_the_structured_errors() -> None:
    schema = make_app().openapi()
    error = {"$ref": "#/components/schemas/ErrorResponse"}
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert responses["422"]["content"]["application/json"]["schema"] == error, (method, path)
            if "requestBody" in operation:
                assert responses["413"]["content"]["application/json"]["schema"] == error, (method, path)
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert schema["components"]["schemas"]["ErrorResponse"]["required"] == ["error"]


def test_every_string_a_client_sends_is_documented_nul_free() -> None:
    schema = make_app().openapi()
    components = schema["components"]["schemas"]
    assert components["Note"]["properties"]["text"]["pattern"] == NO_NUL
    parameters = {p["name"]: p["schema"] for p in schema["paths"]["/items"]["get"]["parameters"]}
    assert parameters["q"]["anyOf"][0]["pattern"] == NO_NUL
    path = schema["paths"]["/items/{name}"]["get"]["parameters"][0]["schema"]
    assert path["pattern"] == NO_NUL
    assert "pattern" not in components["Shown"]["properties"]["name"]  # what the API answers: its own business


async def test_method_not_allowed_names_every_method_of_the_path(client) -> None:
    response = await client.put("/items/a")
    refused(response, 405, "method_not_allowed")
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "DELETE"}
