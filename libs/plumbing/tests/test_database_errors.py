"""Database errors a request causes: a data exception (SQLSTATE class 22: out of range, NUL,
bad encoding) is the client's 422; any other is a 500. Neither logs the statement's bind values,
which hold the request's data (secrets, personal data)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
import structlog
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError

from pytake_devstack.fake_records import FakeRecordProducer
from pytake_plumbing.service_app import build_service_app

SECRET = "s3cret-bind-value"


class AdaptedError(Exception):
    """What SQLAlchemy's asyncpg dialect wraps: the driver's error, with its SQLSTATE."""

    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def wrapped(sqlstate: str) -> DBAPIError:
    orig = AdaptedError(f"invalid input for query argument $1: '{SECRET}'", sqlstate)
    return DBAPIError("INSERT INTO flows (name) VALUES ($1)", (SECRET,), orig)


def make_app() -> FastAPI:
    app = build_service_app("test", FakeRecordProducer())

    @app.get("/out-of-range")
    async def out_of_range() -> None:
        raise wrapped("22003")

    @app.get("/nul")
    async def nul() -> None:
        raise asyncpg.exceptions.CharacterNotInRepertoireError(f"invalid byte sequence: {SECRET}")

    @app.get("/missing-table")
    async def missing_table() -> None:
        raise wrapped("42P01")

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.mark.parametrize("path", ["/out-of-range", "/nul"])
async def test_a_data_exception_caused_by_input_is_422(client, path) -> None:
    with structlog.testing.capture_logs() as logs:
        response = await client.get(path)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_input"
    assert SECRET not in response.text
    assert SECRET not in repr(logs)


async def test_another_database_error_is_500_and_logged_without_its_values(client) -> None:
    with structlog.testing.capture_logs() as logs:
        response = await client.get("/missing-table")
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "internal_error", "message": "internal error"}}
    [entry] = [entry for entry in logs if entry["event"] == "unhandled_error"]
    assert entry["sqlstate"] == "42P01"
    assert entry["statement"] == "INSERT INTO flows (name) VALUES ($1)"
    assert "missing_table" in entry["stack"]  # where it happened
    assert SECRET not in repr(logs)
