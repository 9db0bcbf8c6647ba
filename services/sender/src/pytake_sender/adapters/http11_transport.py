"""A lean HTTP/1.1 transport for httpx: kept-alive connections on asyncio protocols.

httpx's default transport (httpcore) checks every pooled connection for readability with a
system call on each request, so its CPU cost grows with the pool; at thousands of sends a
second that was most of the sender's time. Here the event loop tells a connection when its
peer closed it, so taking an idle connection costs nothing, and responses are parsed by
httptools (C). The client API stays httpx: this only replaces what moves the bytes.

What a failure means matters to the sender, so errors are raised as httpx's own:
- `ConnectError` / `ConnectTimeout` / `PoolTimeout`: the request never left;
- `ReadTimeout`, `RemoteProtocolError`, `ReadError`, `WriteError`: it may have been received.

A server closing an idle connection just as a request goes out on it makes that request
ambiguous, so idle connections are dropped before a server would drop them
(`keepalive_expiry`, shorter than common server idle timeouts) and, when idle for a while,
checked for a close the event loop has not handled yet.
"""

from __future__ import annotations

import asyncio
import select
import ssl
import time
from collections import deque

import httptools
import httpx

DEFAULT_PORTS = {b"http": 80, b"https": 443}
# A connection idle longer than this is checked for a close the event loop has not seen yet;
# under load connections are reused within milliseconds and never pay for the check.
RECHECK_IDLE_S = 0.25
Origin = tuple[bytes, bytes, int]


class _Connection(asyncio.Protocol):
    """One connection; one request at a time (no pipelining)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._response: asyncio.Future[tuple[int, list[tuple[bytes, bytes]], bytes, bool]] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._headers_done = False
        self._until_eof = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._response is None or self._response.done():
            self.close()  # nothing was asked: the connection cannot be trusted any more
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"invalid response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._response is not None and not self._response.done():
            if self._headers_done and self._until_eof:  # a body delimited by the end of the connection
                self._finish(keep_alive=False)
            else:
                self._fail(httpx.RemoteProtocolError("the server closed the connection without a full response"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._headers_done = True
        names = {name.lower() for name, _ in self._headers}
        self._until_eof = b"content-length" not in names and b"transfer-encoding" not in names

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._finish(keep_alive=self._parser.should_keep_alive())

    # use
    async def round_trip(self, data: bytes, read_timeout: float | None) -> tuple[int, list[tuple[bytes, bytes]],
                                                                                 bytes, bool]:
        assert self.transport is not None
        self._headers, self._body, self._headers_done, self._until_eof = [], [], False, False
        self._response = asyncio.get_running_loop().create_future()
        try:
            self.transport.write(data)
        except (OSError, RuntimeError) as exc:
            self.close()
            raise httpx.WriteError(str(exc) or type(exc).__name__) from exc
        try:
            if read_timeout is None:
                return await self._response
            async with asyncio.timeout(read_timeout):
                return await self._response
        except TimeoutError:
            self.close()
            raise httpx.ReadTimeout("no response in time") from None
        except BaseException:
            if not self._response.done():  # cancelled mid-request: the connection is unusable
                self.close()
            raise

    def looks_closed(self) -> bool:
        """True when the peer has closed (or written to) this idle connection, even if the event
        loop has not handled it yet: a busy loop may not have read the peer's FIN."""
        if self.closed or self.transport is None or self.transport.is_closing():
            return True
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock.fileno()], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)  # an idle connection has nothing to say but goodbye

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _finish(self, *, keep_alive: bool) -> None:
        assert self._response is not None
        if not self._response.done():
            self._response.set_result((self._parser.get_status_code(), self._headers, b"".join(self._body),
                                       keep_alive))

    def _fail(self, error: Exception) -> None:
        if self._response is not None and not self._response.done():
            self._response.set_exception(error)


class Http11Transport(httpx.AsyncBaseTransport):
    """Up to `max_connections` kept-alive connections per origin (most recently used first)."""

    def __init__(self, max_connections: int = 100, keepalive_expiry: float = 30.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._idle: dict[Origin, list[_Connection]] = {}
        self._open: dict[Origin, int] = {}
        self._waiters: dict[Origin, deque[asyncio.Future[None]]] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise httpx.ConnectError("the transport is closed")
        url = request.url
        scheme = url.raw_scheme
        if scheme not in DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        origin = (scheme, url.raw_host, url.port or DEFAULT_PORTS[scheme])
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        data = _serialize(request, await request.aread())  # bodies go whole: the Graph API's are small
        connection = await self._checkout(origin, timeouts.get("pool"), timeouts.get("connect"))
        keep_alive = False
        try:
            status, headers, body, keep_alive = await connection.round_trip(data, timeouts.get("read"))
        finally:
            self._checkin(origin, connection, keep_alive)
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body),
                              extensions={"http_version": b"HTTP/1.1"})

    async def aclose(self) -> None:
        self._closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    async def _checkout(self, origin: Origin, pool_timeout: float | None,
                        connect_timeout: float | None) -> _Connection:
        connection = self._take_idle(origin)
        while connection is None and self._open.get(origin, 0) >= self._max_connections:
            await self._wait_for_room(origin, pool_timeout)
            connection = self._take_idle(origin)
        if connection is not None:
            return connection
        self._opened(origin, 1)
        try:
            return await self._connect(origin, connect_timeout)
        except BaseException:
            self._opened(origin, -1)
            raise

    def _take_idle(self, origin: Origin) -> _Connection | None:
        """The most recently used idle connection still open (closing those that are not)."""
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            idle_for = now - connection.idle_since
            if not connection.closed and idle_for < self._keepalive_expiry and not (
                    idle_for > RECHECK_IDLE_S and connection.looks_closed()):
                return connection
            connection.close()
            self._opened(origin, -1)
        return None

    async def _connect(self, origin: Origin, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        ssl_context = None
        if scheme == b"https":
            if self._ssl_context is None:  # made once, on first use (loading the CA bundle is slow)
                self._ssl_context = httpx.create_ssl_context()
            ssl_context = self._ssl_context
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(_Connection, host.decode("ascii"), port,
                                                             ssl=ssl_context)
        except TimeoutError:
            raise httpx.ConnectTimeout("connecting timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return connection

    def _checkin(self, origin: Origin, connection: _Connection, keep_alive: bool) -> None:
        if keep_alive and not connection.closed and not self._closed:
            connection.idle_since = time.monotonic()
            self._idle.setdefault(origin, []).append(connection)
        else:
            connection.close()
            self._opened(origin, -1)
        waiters = self._waiters.get(origin)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    async def _wait_for_room(self, origin: Origin, timeout: float | None) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(origin, deque()).append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            raise httpx.PoolTimeout("no free connection in time") from None

    def _opened(self, origin: Origin, change: int) -> None:
        self._open[origin] = self._open.get(origin, 0) + change


def _serialize(request: httpx.Request, content: bytes) -> bytes:
    head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), request.url.raw_path)]
    head += [b"%s: %s\r\n" % (name, value) for name, value in request.headers.raw]
    head.append(b"\r\n")
    return b"".join(head) + content

