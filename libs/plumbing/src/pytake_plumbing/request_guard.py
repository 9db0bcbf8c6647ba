"""Input no handler should ever see, refused before routing: a general guard for every API.

- Bodies over a size limit: 413, whether the size is declared (Content-Length) or found while
  reading (chunked uploads are counted as they stream).
- NUL characters in the decoded path, the query or a JSON body, and JSON strings that are not
  Unicode text (lone surrogates) or numbers JSON does not have (NaN, Infinity): 422. PostgreSQL's
  text and JSONB cannot hold U+0000, and UTF-8 cannot hold a surrogate; such input would otherwise
  fail deep in a query.

The JSON check decodes the body (an escaped backslash, `\\\\u0000`, is text, not a NUL) and walks
it without recursion. A body that is not JSON at all is left to the framework, which reports it.
Per-route limits tighter than the service's go through `body_limit`, a dependency; the OpenAPI
document states the NUL rule on every string a client sends (`document_nul_rule`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from fastapi import Request
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .bounds import NO_NUL
from .errors import ApiError, error_body

# The largest management request is a flow simulation: 100 customer messages of up to 4096
# characters, about 400 KB of text. Flow documents are held to less by their routes (256 KiB).
DEFAULT_MAX_BODY_BYTES = 1024 * 1024

Exclude = Callable[[Scope], bool]


class _NotStorable(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NotStorable(f"{name} is not a JSON number")


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "NUL characters (U+0000) are not allowed"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "strings must be Unicode text (a lone surrogate is not)"
    return None


def json_problem(body: bytes) -> str | None:
    """Why a JSON body cannot be stored, if it cannot; None for storable JSON and for non-JSON (the app's to report)."""
    try:
        document = json.loads(body, parse_constant=_refuse_constant)
    except _NotStorable as exc:
        return str(exc)
    except (ValueError, RecursionError):
        return None  # not JSON (or not UTF-8): the framework answers it with its own error
    pending: list[Any] = [document]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            problem = _text_problem(value)
            if problem:
                return problem
        elif isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return None


def target_problem(scope: Scope) -> str | None:
    """Why the request's path or query cannot be used, if it cannot."""
    if "\x00" in scope.get("path", ""):
        return "NUL characters (U+0000) are not allowed in the path"
    query = scope.get("query_string", b"").decode("latin-1")
    if "\x00" in query or ("%00" in query and "\x00" in unquote(query)):
        return "NUL characters (U+0000) are not allowed in the query"
    return None


def _is_json(content_type: str | None) -> bool:
    # As FastAPI decides: no content type, application/json, or any +json type.
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class RequestGuard:
    """ASGI middleware: refuses oversized bodies (413) and input PostgreSQL cannot hold (422).

    The body (at most `max_body_bytes`) is read before the app runs and replayed to it.
    `exclude` names requests the guard leaves alone (a hot path with checks of its own).
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 exclude: Exclude | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.exclude = exclude

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.exclude is not None and self.exclude(scope)):
            await self.app(scope, receive, send)
            return
        problem = target_problem(scope)
        if problem:
            await _refuse(scope, receive, send, 422, "validation_error", problem)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._too_large(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away: nobody to answer
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                await self._too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        if body and _is_json(headers.get("content-type")):
            problem = json_problem(bytes(body))
            if problem:
                await _refuse(scope, receive, send, 422, "validation_error", f"the JSON body: {problem}")
                return
        await self.app(scope, _replay(bytes(body), receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _refuse(scope, receive, send, 413, "payload_too_large",
                      f"the request body is larger than {self.max_body_bytes} bytes")


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: the disconnect, when it comes

    return replayed


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, code: str, message: str) -> None:
    await JSONResponse(error_body(code, message), status_code=status)(scope, receive, send)


def body_limit(max_bytes: int) -> Callable[[Request], Awaitable[None]]:
    """A route dependency: 413 for a body over `max_bytes` (tighter than the service's own limit).

    The guard has already read the body (within the service's limit), so counting it costs nothing.
    """
    async def within_limit(request: Request) -> None:
        if len(await request.body()) > max_bytes:
            raise ApiError(413, "payload_too_large", f"the request body is larger than {max_bytes} bytes")

    return within_limit


# --- the OpenAPI document says what the guard refuses ------------------------------------------

_COMPONENT = "#/components/schemas/"


def document_nul_rule(app: Any) -> None:
    """Every string a client sends (parameters and request bodies) is documented as NUL-free, as the
    guard enforces it: clients, and fuzzers, learn the rule from the schema. A string that already has
    a pattern or a format (uuid, date-time, ...) says what it allows itself; a free-form JSON value
    (`{}`) cannot say it."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _document_nul_rule(generate())
        return app.openapi_schema  # type: ignore[no-any-return]

    app.openapi = openapi


def _document_nul_rule(schema: dict[str, Any]) -> None:
    components = schema.get("components", {}).get("schemas", {})
    pending: list[Any] = []
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            pending.extend(parameter.get("schema") for parameter in operation.get("parameters", []))
            pending.extend(media.get("schema") for media in operation.get("requestBody", {}).get("content", {}).values())
    seen: set[str] = set()
    while pending:
        node = pending.pop()
        if isinstance(node, list):
            pending.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        reference = node.get("$ref")
        if isinstance(reference, str) and reference.startswith(_COMPONENT) and reference not in seen:
            seen.add(reference)
            pending.append(components.get(reference.removeprefix(_COMPONENT)))
        # A secret (format: password) is text like any other.
        if (node.get("type") == "string" and node.get("format", "password") == "password"
                and not {"pattern", "enum", "const"} & node.keys()):
            node["pattern"] = NO_NUL
        for key in ("properties", "patternProperties", "$defs"):
            pending.extend((node.get(key) or {}).values())
        for key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf", "prefixItems", "not"):
            pending.append(node.get(key))
