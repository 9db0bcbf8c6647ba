"""Signed webhooks per second: the gateway against a bare signature-checking endpoint (the ceiling).

    uv run python benchmarks/gateway_webhooks.py [--seconds 10] [--connections 64] [--rate 1000]

In one run, on loopback only:
  1. starts the ceiling, a bare FastAPI endpoint that only checks X-Hub-Signature-256, under uvicorn;
  2. starts one gateway process (`pytake-gateway run`: signature, validation, publish of the webhook to
     the real Kafka's intake topic with acks=all and the idempotent producer, 200 only after the
     acknowledgement);
  3. from a separate load process, measures each with `--connections` keep-alive connections for
     `--seconds` (closed loop: signed webhooks/s): the ratio of these two is the issue's figure;
  4. starts the gateway's forwarder (`pytake-gateway forward`: split, PostgreSQL dedup, publish to the
     inbound topic), which in production runs on CPUs of its own, and measures the gateway again while
     the forwarder works through the backlog on the same CPUs; waits for it to catch up;
  5. measures the gateway at a fixed `--rate` requests/s, the forwarder passing each webhook on as it
     comes (open loop; latency counted from each request's scheduled time, so a stall is not hidden);
  6. waits for the forwarder again, and checks that every accepted webhook's message reached the
     inbound topic exactly once.
Every webhook is distinct (its own wamid). Needs the local Kafka and PostgreSQL (scripts/servers.sh
up); uses a namespace of its own and drops it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from fastapi import FastAPI, Request, Response

SECRET = "bench-app-secret"
PATH = "/api/v1/webhooks/whatsapp"
ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- the ceiling


def ceiling_app() -> FastAPI:
    app = FastAPI()

    @app.post(PATH)
    async def receive(request: Request) -> Response:
        body = await request.body()
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        given = request.headers.get("x-hub-signature-256", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return Response(status_code=401)
        return Response(b'{"status":"accepted"}', media_type="application/json")

    @app.get("/api/v1/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    return app


# ---------------------------------------------------------------- load generation


def signed_requests(count: int, port: int) -> list[bytes]:
    """Raw HTTP/1.1 requests, each a distinct signed text-message webhook."""
    out = []
    for _ in range(count):
        wamid = "wamid.HBgL" + secrets.token_hex(12).upper()
        body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
            "field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550100", "phone_number_id": "100000000000001"},
                "contacts": [{"profile": {"name": "Ada"}, "wa_id": "1555" + str(len(out) % 5000).zfill(7)}],
                "messages": [{"from": "1555" + str(len(out) % 5000).zfill(7), "id": wamid,
                              "timestamp": str(int(time.time())), "type": "text",
                              "text": {"body": "benchmark message"}}]}}]}]}, separators=(",", ":")).encode()
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        head = (f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                f"X-Hub-Signature-256: {signature}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        out.append(head + body)
    return out


class Connection:
    """A minimal keep-alive HTTP/1.1 client: the load generator must not be the bottleneck."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


async def closed_loop(port: int, connections: int, seconds: float) -> dict:
    requests = signed_requests(int(seconds * 12000) + connections * 10, port)
    conns = [await Connection.open(port) for _ in range(connections)]
    statuses: dict[int, int] = {}
    index = 0
    deadline = time.perf_counter() + seconds

    async def worker(conn: Connection) -> None:
        nonlocal index
        while time.perf_counter() < deadline and index < len(requests):
            request = requests[index]
            index += 1
            status = await conn.send(request)
            statuses[status] = statuses.get(status, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - started
    for conn in conns:
        conn.close()
    return {"ok_per_s": statuses.get(200, 0) / elapsed, "statuses": statuses, "seconds": elapsed}


async def open_loop(port: int, rate: float, seconds: float, connections: int) -> dict:
    total = int(rate * seconds)
    requests = signed_requests(total, port)
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await Connection.open(port))
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def one(request: bytes, scheduled: float) -> None:
        conn = await pool.get()
        try:
            status = await conn.send(request)
        finally:
            pool.put_nowait(conn)
        latencies.append(time.perf_counter() - scheduled)
        statuses[status] = statuses.get(status, 0) + 1

    start = time.perf_counter() + 0.2
    tasks = []
    for i, request in enumerate(requests):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(request, scheduled)))
    await asyncio.gather(*tasks)
    while not pool.empty():
        pool.get_nowait().close()
    latencies.sort()
    return {"rate": rate, "sent": total, "statuses": statuses,
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
            "max_ms": 1000 * latencies[-1]}


def run_load(args: argparse.Namespace) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if args.mode == "closed":
        result = asyncio.run(closed_loop(args.port, args.connections, args.seconds))
    else:
        result = asyncio.run(open_loop(args.port, args.rate, args.seconds, args.connections))
    print(json.dumps(result))


# ---------------------------------------------------------------- orchestration


def load(port: int, mode: str, args: argparse.Namespace) -> dict:
    """The load generator runs in a process of its own."""
    out = subprocess.run([sys.executable, __file__, "--load", mode, "--port", str(port), "--seconds",
                          str(args.seconds), "--connections", str(args.connections), "--rate", str(args.rate)],
                         check=True, capture_output=True, text=True, timeout=args.seconds * 10 + 120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def wait_ready(port: int, process: subprocess.Popen, name: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{name} not ready after {timeout_s}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--load", choices=["closed", "open"], help=argparse.SUPPRESS)
    parser.add_argument("--serve-ceiling", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_ceiling:
        import uvicorn

        uvicorn.run(ceiling_app(), host="127.0.0.1", port=args.port, log_level="warning")
        return
    if args.load:
        args.mode = args.load
        run_load(args)
        return
    orchestrate(args)


def orchestrate(args: argparse.Namespace) -> None:
    from pytake_devstack.servers import local_env
    from pytake_devstack.stack import free_port
    from pytake_plumbing.messaging import delete_namespace_topics, ensure_topics
    from pytake_plumbing.settings import CommonSettings

    namespace = "bench" + secrets.token_hex(3)
    servers = {k: v for k, v in local_env().items() if k in {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"}}
    env = {**os.environ, **servers, "PYTAKE_NAMESPACE": namespace, "GATEWAY_SECRETS_SOURCE": "demo",
           "GATEWAY_DEMO_APP_SECRET": SECRET, "GATEWAY_RATE_LIMIT_PER_S": "0", "LOG_LEVEL": "WARNING"}
    settings = CommonSettings.model_validate(env)
    asyncio.run(ensure_topics(settings))
    subprocess.run([sys.executable, "-m", "pytake_gateway.main", "migrate"], env=env, check=True)
    ceiling_port, gateway_port, forwarder_port = free_port(), free_port(), free_port()
    logs = ROOT / ".local" / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    processes = []
    try:
        with open(logs / "ceiling.log", "wb") as ceiling_log, open(logs / "gateway.log", "wb") as gateway_log:
            ceiling = subprocess.Popen([sys.executable, __file__, "--serve-ceiling", "--port", str(ceiling_port)],
                                       stdout=ceiling_log, stderr=subprocess.STDOUT)
            processes.append(ceiling)
            gateway = subprocess.Popen([sys.executable, "-m", "pytake_gateway.main", "run"],
                                       env={**env, "GATEWAY_HTTP_PORT": str(gateway_port)},
                                       stdout=gateway_log, stderr=subprocess.STDOUT)
            processes.append(gateway)
        wait_ready(ceiling_port, ceiling, "ceiling")
        wait_ready(gateway_port, gateway, "gateway")
        # Warm-up at full load, long enough for the Kafka broker's JIT too: a freshly started broker
        # costs several times more per record for its first tens of thousands.
        warm = load(gateway_port, "closed", argparse.Namespace(**{**vars(args), "seconds": 5.0}))
        top = load(ceiling_port, "closed", args)
        ours = load(gateway_port, "closed", args)
        with open(logs / "gateway-forwarder.log", "wb") as forwarder_log:
            forwarder = subprocess.Popen([sys.executable, "-m", "pytake_gateway.main", "forward"],
                                         env={**env, "GATEWAY_FORWARDER_HTTP_PORT": str(forwarder_port)},
                                         stdout=forwarder_log, stderr=subprocess.STDOUT)
            processes.append(forwarder)
        wait_ready(forwarder_port, forwarder, "gateway forwarder")
        shared = load(gateway_port, "closed", args)
        drain_s, backlog, _, _ = asyncio.run(forwarder_caught_up(settings))
        paced = load(gateway_port, "open", args)
        accepted = sum(run["statuses"].get("200", 0) for run in (warm, ours, shared, paced))
        waited_s, _, stored, forwarded = asyncio.run(forwarder_caught_up(settings))
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)
        asyncio.run(delete_namespace_topics(settings))
        asyncio.run(_drop_schema(settings))
    print(f"ceiling (signature only)  : {top['ok_per_s']:8.0f} signed webhooks/s   {top['statuses']}")
    print(f"gateway (durable publish) : {ours['ok_per_s']:8.0f} signed webhooks/s   {ours['statuses']}")
    print(f"ratio                     : {100 * ours['ok_per_s'] / top['ok_per_s']:8.1f} %   (target >= 60 %)")
    print(f"gateway, forwarder working on the same CPUs : {shared['ok_per_s']:.0f} signed webhooks/s "
          f"({100 * shared['ok_per_s'] / top['ok_per_s']:.1f} % of the ceiling)   {shared['statuses']}")
    print(f"gateway at {paced['rate']:.0f} req/s for {args.seconds:.0f}s : p50 {paced['p50_ms']:.1f} ms   "
          f"p99 {paced['p99_ms']:.1f} ms   max {paced['max_ms']:.1f} ms   (target p99 <= 25 ms)   "
          f"{paced['statuses']}")
    rate = f" ({backlog / drain_s:.0f} webhooks/s)" if drain_s > 0.5 else ""
    print(f"forwarder                 : {backlog} webhooks behind after the loaded runs, caught up in {drain_s:.1f}s"
          f"{rate}; {waited_s:.1f}s behind at the end of the paced run")
    print(f"exactly once              : {stored} webhooks stored, {forwarded} events forwarded, {accepted} webhooks "
          f"accepted")
    print(f"({os.cpu_count()} CPUs, {args.connections} connections, load generator in its own process)")
    if not stored == forwarded == accepted:
        raise SystemExit("every accepted webhook must be stored and forwarded exactly once")


async def forwarder_caught_up(settings, timeout_s: float = 180.0) -> tuple[float, int, int, int]:  # noqa: ANN001
    """Waits until the forwarder has committed the whole intake topic; returns the time that took,
    how many records it was behind then, the records in the intake topic and the events in the inbound topic."""
    from pytake_contracts.topics import WEBHOOK_INBOUND, WEBHOOK_INTAKE
    from pytake_devstack.kafka_io import Admin, Partition

    admin = Admin(settings.kafka_bootstrap_servers)

    async def end_total(spec) -> int:  # noqa: ANN001
        name = settings.topic(spec)
        partitions = [Partition(name, p) for p in range(spec.partitions)]
        return sum((await admin.end_offsets(partitions)).values())

    stored = await end_total(WEBHOOK_INTAKE)
    started = time.perf_counter()
    group = settings.consumer_group("gateway-forwarder")
    behind = None
    while True:
        done = sum((await admin.committed(group)).values())
        behind = stored - done if behind is None else behind
        if done >= stored:
            break
        if time.perf_counter() - started > timeout_s:
            raise SystemExit(f"the forwarder did not catch up within {timeout_s:.0f}s")
        await asyncio.sleep(0.1)
    return time.perf_counter() - started, behind, stored, await end_total(WEBHOOK_INBOUND)


async def _drop_schema(settings) -> None:  # noqa: ANN001
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(settings.database_url)
    async with engine.begin() as connection:
        await connection.execute(text(f'DROP SCHEMA IF EXISTS "{settings.db_schema("gateway")}" CASCADE'))
    await engine.dispose()


if __name__ == "__main__":
    main()
