"""The Graph API client's transport against a real local HTTP server that misbehaves on request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx
import pytest

from pytake_sender.adapters.graph_api import GraphApiClient
from pytake_sender.adapters.http11_transport import Http11Transport
from pytake_sender.domain.meta_errors import AmbiguousSend, MetaApiError

OK_BODY = b'{"messaging_product":"whatsapp","messages":[{"id":"wamid.1"}]}'


def ok(body: bytes = OK_BODY, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n"
            % (len(body), extra)) + body


@dataclass
class Server:
    """Answers each request with what `answer` returns (None: close without answering)."""

    answer: Callable[[int], bytes | None]
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    url: str = ""
    close_after_answer: bool = False
    closed: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server(answer=lambda _: ok())

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                body = await reader.readexactly(length)
                state.requests.append(head + body)
                answer = state.answer(len(state.requests))
                if answer is None:
                    break
                if answer == b"hang":
                    await asyncio.sleep(10)
                writer.write(answer)
                await writer.drain()
                if b"connection: close" in answer.lower() or state.close_after_answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            await writer.wait_closed()
            state.closed.set()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    async with listener:
        yield state


async def test_requests_share_a_kept_alive_connection(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url, transport=Http11Transport(max_connections=4)) as client:
        for _ in range(3):
            response = await client.post("/v23.0/1/messages", json={"to": "1"}, headers={"Authorization": "Bearer t"})
            assert response.json()["messages"][0]["id"] == "wamid.1"
    assert server.connections == 1 and len(server.requests) == 3
    assert b"authorization: bearer t" in server.requests[0].lower()
    assert server.requests[0].endswith(b'{"to":"1"}')


async def test_chunked_answer_is_read_whole(server: Server) -> None:
    chunked = (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: application/json\r\n\r\n"
               b"10\r\n" + OK_BODY[:16] + b"\r\n%x\r\n" % (len(OK_BODY) - 16) + OK_BODY[16:] + b"\r\n0\r\n\r\n")
    server.answer = lambda _: chunked
    async with httpx.AsyncClient(base_url=server.url, transport=Http11Transport()) as client:
        assert (await client.post("/x", json={})).json()["messages"][0]["id"] == "wamid.1"


async def test_connection_close_is_honoured(server: Server) -> None:
    server.answer = lambda _: ok(extra=b"connection: close\r\n")
    async with httpx.AsyncClient(base_url=server.url, transport=Http11Transport()) as client:
        for _ in range(2):
            assert (await client.post("/x", json={})).status_code == 200
    assert server.connections == 2


async def test_connection_closed_by_the_server_while_idle_is_not_reused(server: Server) -> None:
    server.close_after_answer = True  # answers as if keeping the connection, then drops it
    transport = Http11Transport()
    async with httpx.AsyncClient(base_url=server.url, transport=transport) as client:
        assert (await client.post("/x", json={})).status_code == 200
        await server.closed.wait()
        for connections in transport._idle.values():
            for connection in connections:
                connection.idle_since -= 1.0  # idle long enough to be checked before use
        server.close_after_answer = False
        assert (await client.post("/x", json={})).status_code == 200
    assert server.connections == 2 and len(server.requests) == 2


async def test_no_answer_is_ambiguous_and_refused_connection_is_not_sent(server: Server) -> None:
    server.answer = lambda _: None  # reads the request, closes without a word
    graph = GraphApiClient(server.url, "v23.0", timeout_s=2.0, max_connections=2)
    with pytest.raises(AmbiguousSend):
        await graph.send("1", "token", {"to": "1"})
    await graph.close()

    refused = GraphApiClient("http://127.0.0.1:1", "v23.0", timeout_s=2.0)
    with pytest.raises(MetaApiError) as error:
        await refused.send("1", "token", {"to": "1"})
    assert error.value.http_status == 503 and "not sent" in error.value.message
    await refused.close()


async def test_slow_answer_times_out_as_ambiguous(server: Server) -> None:
    server.answer = lambda _: b"hang"
    graph = GraphApiClient(server.url, "v23.0", timeout_s=0.3)
    with pytest.raises(AmbiguousSend):
        await graph.send("1", "token", {"to": "1"})
    await graph.close()


async def test_meta_error_is_read_from_the_answer(server: Server) -> None:
    body = b'{"error":{"message":"Re-engagement message","code":131047}}'
    server.answer = lambda _: ok(body).replace(b"200 OK", b"400 Bad Request")
    graph = GraphApiClient(server.url, "v23.0", timeout_s=2.0)
    with pytest.raises(MetaApiError) as error:
        await graph.send("1", "token", {"to": "1"})
    assert error.value.code == 131047 and error.value.http_status == 400
    await graph.close()
