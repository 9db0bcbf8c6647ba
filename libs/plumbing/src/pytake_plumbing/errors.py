"""Structured API errors: `{"error": {"code", "message", "details"}}`, never a stack trace."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import StatementError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from .logs import get_logger

log = get_logger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


class ErrorBody(BaseModel):
    code: str = Field(description="Stable, machine-readable: not_found, validation_error, payload_too_large, ...")
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    """Every error answer of every PyTake API."""

    error: ErrorBody


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a route: the structured error body for each status it may answer with."""
    return {status: {"model": ErrorResponse} for status in statuses}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return {"error": body}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, exc.details), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()]
        return JSONResponse(error_body("validation_error", "the request is not valid", details), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 401: "unauthenticated",
                403: "forbidden", 413: "payload_too_large"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Every method the path has, not only those of the first route that matched it.
            headers["Allow"] = ", ".join(allowed_methods(request))
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=headers)

    @app.exception_handler(StatementError)
    @app.exception_handler(asyncpg.PostgresError)
    async def database_error(_: Request, exc: Exception) -> JSONResponse:
        # Handled here, not re-raised to the server: its traceback would print the bind values.
        if is_input_data_error(exc):
            # A validation gap: the input should have been refused before the query.
            log.warning("input_refused_by_database", **describe_error(exc))
            return JSONResponse(error_body("invalid_input", "a value in the request cannot be stored: it is out "
                                                             "of range or holds characters the database refuses"),
                                status_code=422)
        log_unhandled(exc)
        return JSONResponse(error_body("internal_error", "internal error"), status_code=500)


def allowed_methods(request: Request) -> list[str]:
    """The methods of every route whose path matches the request's."""
    methods: set[str] = set()
    routes = list(request.app.routes)
    while routes:
        route = routes.pop()
        inner = getattr(route, "original_router", None)  # an included router: its own routes
        if inner is not None:
            routes.extend(inner.routes)
            continue
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


# --- database errors: what input caused, and logs without bind values ----------------------


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The error, what it wraps (a SQLAlchemy error's driver error) and what caused it, each once."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.append(current.orig if isinstance(current, StatementError) else None)
        pending.append(current.__cause__ or current.__context__)


def _sqlstate(exc: BaseException) -> str | None:
    for error in _chain(exc):
        state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if isinstance(state, str):
            return state
    return None


def _database_error(exc: BaseException) -> BaseException | None:
    return next((error for error in _chain(exc) if isinstance(error, StatementError | asyncpg.PostgresError)), None)


def is_input_data_error(exc: BaseException) -> bool:
    """A PostgreSQL data exception (SQLSTATE class 22: out of range, NUL, bad encoding, bad JSON ...)."""
    state = _sqlstate(exc)
    return _database_error(exc) is not None and state is not None and state.startswith("22")


def describe_error(exc: BaseException) -> dict[str, Any]:
    """Loggable fields of an error. A database error's message and parameters hold the request's
    values (secrets, personal data): it is described by its classes, SQLSTATE and statement only."""
    if _database_error(exc) is None:
        return {"error": repr(exc)[:2000]}
    described: dict[str, Any] = {
        "error": type(exc).__name__,
        "error_chain": [type(error).__name__ for error in _chain(exc)][:8],
        "sqlstate": _sqlstate(exc),
    }
    statement = next((error.statement for error in _chain(exc) if isinstance(error, StatementError)), None)
    if statement:
        described["statement"] = str(statement)[:1000]
    return described


def log_unhandled(exc: BaseException) -> None:
    """The unhandled error, with its stack; for a database error, without its message or values."""
    if _database_error(exc) is None:
        log.error("unhandled_error", exc_info=exc, **describe_error(exc))
        return
    stack = "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__)))
    log.error("unhandled_error", stack=stack[-8000:], **describe_error(exc))


# --- the OpenAPI document says what the errors look like --------------------------------------

_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})
_DESCRIPTIONS = {413: "The request body is too large.",
                 422: "The request is not valid (including NUL characters anywhere in it)."}


def document_errors(app: FastAPI) -> None:
    """Every operation's schema documents the structured error body, including for the statuses a
    guard in front of the routes answers with: 422 on any operation, 413 on one with a body.

    FastAPI's default 422 body (`HTTPValidationError`) is not what these services answer with.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _document_errors(generate())
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _document_errors(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    if "ErrorResponse" not in components:
        model = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in model.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components["ErrorResponse"] = model
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    for path_item in schema.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            for status, response in responses.items():
                if "$ref" in response:
                    continue
                schema_ref = response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
                if status[:1] in {"4", "5"} and (not response.get("content")
                                                 or schema_ref.endswith("/HTTPValidationError")):
                    response["content"] = content
            responses.setdefault("422", {"description": _DESCRIPTIONS[422], "content": content})
            if "requestBody" in operation:
                responses.setdefault("413", {"description": _DESCRIPTIONS[413], "content": content})
    for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's own, once nothing refers to them
        if unused in components:
            others = {name: value for name, value in components.items() if name != unused}
            if f"/{unused}'" not in repr((schema.get("paths"), others)):
                del components[unused]
