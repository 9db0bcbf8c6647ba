"""The whole pipeline under paced load: signed webhooks from many customers → every service → the
reply at the fake Graph API, with Meta's status webhooks for every reply.

    uv run python benchmarks/pipeline_e2e.py --rate 20 --seconds 20
    uv run python benchmarks/pipeline_e2e.py --sweep [--sweep-rates 10,20,40,80] [--seconds 15]

Drives the stack `./pytake demo` left running (ports 8080 and 8090, demo tenant); when none runs,
starts one of its own (own ports and namespace, dropped afterwards).

Load (a process of its own, one event loop, raw keep-alive HTTP/1.1: it must never be the bottleneck,
and it prints its CPU use and how late it sent against its schedule to show it was not):
  - `--rate` customer messages/s, open loop: slot i goes out at t0 + i/rate whatever the stack does;
    latencies count from the slot's scheduled time, so a stall is not hidden;
  - each slot goes to a customer whose next message is due, else a new customer says "Hi". A customer
    runs `--turns` rounds of the demo flow: "Hi" → the bot asks the name → the customer answers (after
    seeing the question, `--think` s later) → the bot greets them by that name; the next round's "Hi"
    comes `--think` s after the answer, without waiting for the greeting, so two messages of one
    conversation can be in flight and their replies' order is checked;
  - it follows the fake Graph API's record of sends (an incremental feed, `/_fake/calls?after_id=`),
    and for every reply posts Meta's `sent`, `delivered` and `read` status webhooks, signed, to the
    gateway (Meta's 3 statuses per outbound message: ingress is 4 webhooks per customer message).

End to end = the webhook's scheduled POST time → the fake Graph API receiving the reply (its own
clock stamp, the same host clock), so following the feed adds nothing to it.

CPU: utime+stime (+ reaped children) of each process tree from /proc, before and after, divided by the
customer messages carried: each service, Kafka (java), PostgreSQL (the postmaster and all its backends)
and FerretDB; the load generator and the fake Graph API apart (they stand in for Meta).

Hop by hop: after a run, the records of the run are read back from Kafka and each customer message
followed by its WhatsApp message id and correlation id; each hop is the time between the record a
service consumed and the one it produced (the records' own timestamps, set by their producers):
forwarder (intake → inbound), router (→ routed), flow engine (→ reply request, its outbox included),
sender (→ message.sent, Meta's answer included).

`--sweep` steps the rate up until saturation (carried < 95 % of offered, replies missing, or end-to-end
p99 > 1 s), prints a table and writes benchmarks/pipeline_e2e.png (needs matplotlib, a dev dependency).
The demo number is limited to 80 messages/s by the sender (Meta's default); `--number-rate N` raises it
(pytake-sender set-rate) so the sweep measures the pipeline rather than that limit.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import os
import resource
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WEBHOOK_PATH = "/api/v1/webhooks/whatsapp"
QUESTION = "Hi! I'm the PyTake demo bot. What's your name?"
SATURATED_P99_S = 1.0


# ================================================================ load generator (its own process)


class Conn:
    """A minimal keep-alive HTTP/1.1 client connection (httpx costs several times more CPU per request)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, (await self.reader.readexactly(length) if length else b"")


class Pool:
    """Connections to one server, opened on demand, so a slow answer never delays the next send."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[Conn] = []
        self.opened = 0

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        conn = self.idle.pop() if self.idle else None
        if conn is not None:
            try:
                result = await conn.request(raw)
            except (OSError, EOFError):
                # The server closes keep-alive connections idle for a few seconds (uvicorn: 5 s):
                # the request was not read, so send it again on a new connection.
                conn.writer.close()
            else:
                self.idle.append(conn)
                return result
        conn = Conn(*await asyncio.open_connection("127.0.0.1", self.port))
        self.opened += 1
        try:
            result = await conn.request(raw)
        except BaseException:
            conn.writer.close()
            raise
        self.idle.append(conn)
        return result


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@dataclass
class Customer:
    wa_id: str
    turns: int
    number: str  # the business number (phone_number_id) the customer writes to
    sent: list[tuple[int, float]] = field(default_factory=list)   # (message index, scheduled wall time)
    wamids: dict[int, str] = field(default_factory=dict)          # message index → its WhatsApp message id
    replied: dict[int, float] = field(default_factory=dict)       # message index → reply's arrival time
    highest_replied: int = -1

    def name(self, index: int) -> str:
        return f"Ada {self.wa_id[-6:]}-{index // 2}"

    def text(self, index: int) -> str:
        return "Hi" if index % 2 == 0 else self.name(index)

    def expected_reply(self, index: int) -> str:
        return QUESTION if index % 2 == 0 else f"Nice to meet you, {self.name(index)}!"


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        from pytake_devstack.demo_tenant import DEMO_TENANT

        self.args = args
        self.tenant = DEMO_TENANT
        self.numbers = [DEMO_TENANT.phone_number_id]  # new customers write to each in turn
        self.gateway = Pool(args.gateway_port)
        self.fake = Pool(args.fake_port)
        self.prefix = "19" + "".join(secrets.choice("0123456789") for _ in range(4))  # per run: fresh customers
        self.customers: dict[str, Customer] = {}
        self.due: list[tuple[float, int, str]] = []   # (due perf time, tiebreak, wa_id): next messages
        self.tie = 0
        self.lag: list[float] = []
        self.acks: list[float] = []
        self.status_acks: list[float] = []
        self.http: dict[str, int] = {}
        self.rejected = 0
        self.duplicates = 0
        self.unexpected = 0
        self.order_violations = 0
        self.statuses_posted = 0
        self.reply_wamids: list[str] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.wall0 = time.time()
        self.perf0 = time.perf_counter()
        self.stop_sending = False

    def wall(self, perf: float) -> float:
        return self.wall0 + (perf - self.perf0)

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def signed_post(self, payload: dict[str, Any]) -> bytes:
        from pytake_devstack import meta_payloads

        body = meta_payloads.encode(payload)
        return (f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"X-Hub-Signature-256: {meta_payloads.sign(body, self.tenant.app_secret)}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    # ---------------------------------------------------------- customers' messages

    async def post_message(self, customer: Customer, index: int, scheduled: float) -> None:
        from pytake_devstack import meta_payloads

        wamid = meta_payloads.new_wamid()
        raw = self.signed_post(meta_payloads.text_message(customer.number, customer.text(index),
                                                          wa_id=customer.wa_id, wamid=wamid))
        self.lag.append(time.perf_counter() - scheduled)
        # Counted as sent before the answer: its reply may come first (an acknowledgement held up).
        customer.sent.append((index, self.wall(scheduled)))
        customer.wamids[index] = wamid
        status = await self.deliver(raw)
        self.acks.append(time.perf_counter() - scheduled)
        self.http[str(status)] = self.http.get(str(status), 0) + 1
        if status != 200:
            self.rejected += 1  # Meta would retry; here it is counted, and the conversation stops
            customer.sent.remove((index, self.wall(scheduled)))
            customer.wamids.pop(index)
            return
        if index % 2 == 1 and index + 1 < 2 * customer.turns:
            # The next round's "Hi" does not wait for the greeting: replies' order is then checked.
            self.make_due(customer, index + 1, time.perf_counter() + self.args.think)

    async def deliver(self, raw: bytes) -> int:
        """Posts one webhook to the gateway: its HTTP status, 0 if the connection failed."""
        try:
            status, _ = await self.gateway.request(raw)
        except (OSError, EOFError):
            status = 0
        return status

    def make_due(self, customer: Customer, index: int, at: float) -> None:
        self.tie += 1
        heapq.heappush(self.due, (at, self.tie, customer.wa_id))

    def next_message(self, now: float) -> tuple[Customer, int]:
        if self.due and self.due[0][0] <= now:
            wa_id = heapq.heappop(self.due)[2]
            customer = self.customers[wa_id]
            return customer, len(customer.sent)
        wa_id = self.prefix + str(len(self.customers)).zfill(6)
        number = self.numbers[len(self.customers) % len(self.numbers)]
        customer = self.customers[wa_id] = Customer(wa_id, self.args.turns, number)
        return customer, 0

    async def drive(self) -> None:
        # Pace by absolute schedule (not sleep(1/rate)), so lateness never accumulates into a lower rate.
        start = time.perf_counter() + 0.2
        self.start_wall = self.wall(start)
        total = int(self.args.rate * self.args.seconds)
        for i in range(total):
            if self.stop_sending:
                break
            scheduled = start + i / self.args.rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            customer, index = self.next_message(scheduled)
            self.spawn(self.post_message(customer, index, scheduled))

    # ---------------------------------------------------------- replies and Meta's statuses

    def on_reply(self, call: dict[str, Any]) -> None:
        customer = self.customers.get(call["body"].get("to", ""))
        if customer is None or call["status"] != 200:
            return
        text = (call["body"].get("text") or {}).get("body", "")
        # The first unreplied message of this customer whose expected reply this is.
        match = next((index for index, _ in customer.sent
                      if index not in customer.replied and text.startswith(customer.expected_reply(index))), None)
        if match is None:
            if any(text.startswith(customer.expected_reply(index)) for index, _ in customer.sent):
                self.duplicates += 1
            else:
                self.unexpected += 1
        else:
            customer.replied[match] = call["received_at"]
            if match < customer.highest_replied:
                self.order_violations += 1
            customer.highest_replied = max(customer.highest_replied, match)
            if match % 2 == 0 and match + 1 < 2 * customer.turns:
                self.make_due(customer, match + 1, time.perf_counter() + self.args.think)  # answers the question
        wamid = call["response"]["messages"][0]["id"]
        self.reply_wamids.append(wamid)
        callback = call["body"].get("biz_opaque_callback_data")
        for offset, status in enumerate(("sent", "delivered", "read")):
            self.spawn(self.post_status(wamid, customer, status, int(call["received_at"]) + offset, callback))

    async def post_status(self, wamid: str, customer: Customer, status: str, timestamp: int,
                          callback: str | None) -> None:
        from pytake_devstack import meta_payloads

        # Meta echoes a send's biz_opaque_callback_data in its statuses.
        extra = {"biz_opaque_callback_data": callback} if callback else {}
        raw = self.signed_post(meta_payloads.envelope(customer.number, {"statuses": [{
            "id": wamid, "status": status, "timestamp": str(timestamp), "recipient_id": customer.wa_id, **extra}]}))
        started = time.perf_counter()
        code = await self.deliver(raw)
        self.status_acks.append(time.perf_counter() - started)
        self.statuses_posted += code == 200

    async def follow_fake(self) -> None:
        """Reads the fake Graph API's sends as they are recorded (long poll on an id cursor)."""
        status, body = await self.fake.request(b"GET /_fake/throughput HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        cursor = json.loads(body)["calls"]
        while not self.stop_following:
            status, body = await self.fake.request(
                f"GET /_fake/calls?after_id={cursor}&wait_s=0.2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            calls = json.loads(body) if status == 200 else []
            for call in calls:
                if call["id"] <= cursor:
                    continue  # a fake Graph API without the after_id filter answers everything
                cursor = call["id"]
                self.on_reply(call)

    def outstanding(self) -> int:
        return sum(len(c.sent) - len(c.replied) for c in self.customers.values())

    async def run(self) -> dict[str, Any]:
        self.stop_following = False
        follower = asyncio.get_running_loop().create_task(self.follow_fake())
        cpu0 = cpu_self()
        await self.drive()
        cpu_sending = cpu_self() - cpu0
        while len(self.acks) < int(self.args.rate * self.args.seconds):  # the last webhooks' answers
            await asyncio.sleep(0.05)
        # Drain: every accepted message's reply, or give up after --drain seconds.
        deadline = time.perf_counter() + self.args.drain
        while self.outstanding() and time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # late duplicates
        self.stop_following = True
        await follower
        while self.tasks:
            await asyncio.sleep(0.05)
        return self.summary(cpu_sending, cpu_self() - cpu0)

    def summary(self, cpu_sending: float, cpu_total: float) -> dict[str, Any]:
        e2e: list[float] = []
        last_reply = 0.0
        sent = replied = 0
        for customer in self.customers.values():
            for index, at in customer.sent:
                sent += 1
                if index in customer.replied:
                    replied += 1
                    e2e.append(customer.replied[index] - at)
                    last_reply = max(last_reply, customer.replied[index])
        e2e.sort()
        self.lag.sort()
        self.acks.sort()
        self.status_acks.sort()
        # Carried: replies over the time from the first scheduled send to the last reply (at least the
        # sending time): a backlog that drains after the load stops stretches it.
        span = max(last_reply - self.start_wall, self.args.seconds)
        ms = lambda values, q: 1000 * percentile(values, q)  # noqa: E731
        return {
            "rate": self.args.rate, "seconds": self.args.seconds, "offered": int(self.args.rate * self.args.seconds),
            "accepted": sent, "rejected": self.rejected, "http": self.http, "replied": replied,
            "missing": sent - replied, "duplicated": self.duplicates, "unexpected": self.unexpected,
            "order_violations": self.order_violations, "customers": len(self.customers),
            "completed": sum(len(c.replied) == 2 * c.turns for c in self.customers.values()),
            "carried_rate": replied / span, "span_s": span,
            "ack_p50_ms": ms(self.acks, 0.5), "ack_p99_ms": ms(self.acks, 0.99),
            "status_ack_p50_ms": ms(self.status_acks, 0.5), "status_ack_p99_ms": ms(self.status_acks, 0.99),
            "statuses_posted": self.statuses_posted,
            "e2e_p50_ms": ms(e2e, 0.5), "e2e_p90_ms": ms(e2e, 0.9), "e2e_p99_ms": ms(e2e, 0.99),
            "e2e_max_ms": 1000 * e2e[-1] if e2e else float("nan"),
            "lag_p50_ms": ms(self.lag, 0.5), "lag_p99_ms": ms(self.lag, 0.99),
            "lag_max_ms": 1000 * self.lag[-1] if self.lag else float("nan"),
            "load_cpu_sending_pct": 100 * cpu_sending / self.args.seconds, "load_cpu_s": cpu_total,
            "connections": self.gateway.opened,
        }


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_load(args: argparse.Namespace) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(Load(args).run())))


# ================================================================ CPU accounting from /proc

TICK = os.sysconf("SC_CLK_TCK")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def tree_cpu_s(pid: int, tree: dict[int, list[int]]) -> float:
    """CPU of a process and all its descendants. A child that exited meanwhile was reaped into its
    parent's cutime/cstime, so before/after deltas stay right while PostgreSQL backends come and go."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    own = sum(int(v) for v in fields[11:15]) / TICK  # utime stime cutime cstime
    return own + sum(tree_cpu_s(child, tree) for child in tree.get(pid, []))


def snapshot(pids: dict[str, int]) -> dict[str, float]:
    tree = _children()
    return {name: tree_cpu_s(pid, tree) for name, pid in pids.items()}


def stack_pids(started: Any = None) -> dict[str, int]:
    """The demo's processes from its pid files (or those of the stack this run started)."""
    from pytake_devstack.demo import RUN_DIR
    from pytake_devstack.paths import STATE_DIR

    pids: dict[str, int] = {}
    if started is not None:
        pids.update({name: p.pid for name, p in started.processes.items()})
    else:
        for pid_file in sorted(RUN_DIR.glob("*.pid")):
            pids[pid_file.stem] = int(pid_file.read_text())
    for name, label in (("kafka", "kafka"), ("postgres", "postgresql"), ("mongo", "ferretdb")):
        pid_file = STATE_DIR / "run" / f"{name}.pid"
        if pid_file.exists():
            pids[label] = int(pid_file.read_text().split()[0])
    return {name: pid for name, pid in pids.items() if Path(f"/proc/{pid}").exists()}


# ================================================================ orchestration


@dataclass
class Target:
    gateway_port: int
    fake_port: int
    pids: dict[str, int]
    kafka: str = ""
    namespace: str = ""
    cleanup: Any = None


def _ready(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def find_or_start_stack(args: argparse.Namespace) -> Target:
    from pytake_devstack.stack import DEFAULT_PORTS

    if _ready(f"http://127.0.0.1:{DEFAULT_PORTS['gateway']}/api/v1/ready") and \
            _ready(f"http://127.0.0.1:{DEFAULT_PORTS['fake-graph-api']}/_fake/health"):
        print("using the running demo stack (./pytake demo)", flush=True)
        if args.number_rate:
            from pytake_devstack.demo import demo_secrets

            set_number_rate(dict(os.environ, **_servers_env(), **demo_secrets(), PYTAKE_NAMESPACE=""),
                            args.number_rate)
        return Target(DEFAULT_PORTS["gateway"], DEFAULT_PORTS["fake-graph-api"], stack_pids(),
                      kafka=_servers_env()["KAFKA_BOOTSTRAP_SERVERS"])
    return start_own_stack(args)


def _servers_env() -> dict[str, str]:
    from pytake_devstack.servers import local_env

    return {k: v for k, v in local_env().items() if k in {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "MONGODB_URL"}}


def set_number_rate(env: dict[str, str], rate: int) -> None:
    from pytake_devstack.demo_tenant import DEMO_TENANT

    subprocess.run([sys.executable, "-m", "pytake_sender.main", "set-rate", DEMO_TENANT.organization_id,
                    DEMO_TENANT.phone_number_id, str(rate)], env=env, check=True, capture_output=True)
    print(f"demo number's send limit set to {rate} messages/s", flush=True)


def start_own_stack(args: argparse.Namespace) -> Target:
    from pytake_devstack.demo_tenant import DEMO_TENANT
    from pytake_devstack.paths import STATE_DIR
    from pytake_devstack.pytest_plugin import _drop_namespace, pipeline_env
    from pytake_devstack.servers import ensure_servers
    from pytake_devstack.stack import Stack, free_ports
    from pytake_plumbing.settings import CommonSettings

    print("no demo stack running: starting one of its own ...", flush=True)
    servers = ensure_servers()
    namespace = "e2e" + secrets.token_hex(3)
    env = {**pipeline_env(servers.env, namespace), "SENDER_BACKOFF_BASE_S": "0.2", "LOG_LEVEL": "WARNING"}
    stack = Stack(env=env, log_dir=STATE_DIR / "bench-logs" / namespace, ports=free_ports())
    stack.prepare([DEMO_TENANT])
    if args.number_rate:
        stack.run_cli("pytake_sender.main", "set-rate", DEMO_TENANT.organization_id, DEMO_TENANT.phone_number_id,
                      str(args.number_rate))
    stack.start()

    def cleanup() -> None:
        stack.stop()
        asyncio.run(_drop_namespace(CommonSettings.model_validate({**servers.env, "PYTAKE_NAMESPACE": namespace})))
        servers.stop_started()

    return Target(stack.ports["gateway"], stack.ports["fake-graph-api"], stack_pids(stack),
                  servers.env["KAFKA_BOOTSTRAP_SERVERS"], namespace, cleanup)


def one_run(target: Target, args: argparse.Namespace, rate: float) -> dict[str, Any]:
    # The stack's idle CPU (Kafka and consumers polling), to show how much of a low rate's figure it is.
    settle(target.pids)  # a previous run's backlog (audit) is not idle
    idle0 = snapshot(target.pids)
    time.sleep(2.0)
    before = snapshot(target.pids)
    idle_per_s = {name: (before[name] - idle0[name]) / 2.0 for name in target.pids}
    started = time.monotonic()
    started_wall = time.time()
    command = [sys.executable, __file__, "--load", "--rate", str(rate), "--seconds", str(args.seconds),
               "--turns", str(args.turns), "--think", str(args.think), "--drain", str(args.drain),
               "--gateway-port", str(target.gateway_port), "--fake-port", str(target.fake_port)]
    out = subprocess.run(command, check=True, capture_output=True, text=True,
                         timeout=args.seconds + args.drain + 120)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    settle(target.pids)
    after = snapshot(target.pids)
    elapsed = time.monotonic() - started
    carried = max(1, result["replied"])
    result["cpu_ms_per_msg"] = {name: 1000 * (after[name] - before[name]) / carried for name in target.pids}
    result["idle_cpu_ms_per_msg"] = {name: 1000 * idle_per_s[name] * elapsed / carried for name in target.pids}
    result["idle_pct"] = 100 * sum(idle_per_s[n] for n in target.pids if n in (*SERVICES, *SERVERS))
    result["cpu_ms_per_msg"]["load generator"] = 1000 * result["load_cpu_s"] / carried
    if target.kafka:
        result["hops"] = asyncio.run(hop_latencies(target, started_wall))
    return result


# ================================================================ where the time goes, hop by hop

HOPS = (("gateway-forwarder", "intake", "inbound"), ("router", "inbound", "routed"),
        ("flow-engine", "routed", "outbound"), ("sender", "outbound", "sent"))


async def hop_latencies(target: Target, since_wall: float) -> dict[str, dict[str, float]]:
    """Each customer message's path through Kafka, from the records' own timestamps (the time each
    producer created them): the intake record the gateway stored → the forwarder's inbound event →
    the router's routed event → the flow engine's reply request → the sender's message.sent (after
    Meta's answer). Joined by WhatsApp message id, then by correlation id."""
    from pytake_contracts import (
        InboundMessageReceived,
        InboundMessageRouted,
        MessageSent,
        OutboundMessageRequested,
        WebhookReceived,
        decode_event,
    )
    from pytake_contracts.topics import (
        MESSAGES_DELIVERY,
        MESSAGES_OUTBOUND,
        MESSAGES_ROUTED,
        WEBHOOK_INBOUND,
        WEBHOOK_INTAKE,
    )
    from pytake_devstack.kafka_io import read_topics

    specs = (WEBHOOK_INTAKE, WEBHOOK_INBOUND, MESSAGES_ROUTED, MESSAGES_OUTBOUND, MESSAGES_DELIVERY)
    prefix = f"{target.namespace}." if target.namespace else ""
    at: dict[str, dict[str, float]] = {"intake": {}, "inbound": {}, "routed": {}, "outbound": {}, "sent": {}}
    chain: dict[str, str] = {}  # correlation id → WhatsApp message id
    later: list[tuple[Any, float]] = []

    def first(stage: str, key: str, ts: float) -> None:
        at[stage][key] = min(ts, at[stage].get(key, ts))

    # The run's records: each partition's from its first at or after the run's start.
    records = await read_topics(target.kafka, [prefix + spec.name for spec in specs], start=int(since_wall * 1000),
                                timeout_s=300)
    for record in records:
        try:
            event = decode_event(record.value)
        except ValueError:
            continue
        ts = record.timestamp / 1000
        if isinstance(event, WebhookReceived):
            body = json.loads(event.payload.body)
            for entry in body.get("entry", []):
                for change in entry.get("changes", []):
                    for message in change.get("value", {}).get("messages", []):
                        first("intake", message["id"], ts)
        elif isinstance(event, InboundMessageReceived):
            chain[event.correlation_id] = event.payload.message.wamid
            first("inbound", event.payload.message.wamid, ts)
        elif isinstance(event, InboundMessageRouted | OutboundMessageRequested | MessageSent):
            later.append((event, ts))  # joined once every inbound event is read
    stages = {InboundMessageRouted: "routed", OutboundMessageRequested: "outbound", MessageSent: "sent"}
    for event, ts in later:
        wamid = chain.get(event.correlation_id)
        if wamid:
            first(stages[type(event)], wamid, ts)
    hops: dict[str, dict[str, float]] = {}
    for name, start, end in (*HOPS, ("intake → sent", "intake", "sent")):
        deltas = sorted(at[end][w] - at[start][w] for w in at[start] if w in at[end])
        if deltas:
            hops[name] = {"mean_ms": 1000 * sum(deltas) / len(deltas), "p50_ms": 1000 * percentile(deltas, 0.5),
                          "p99_ms": 1000 * percentile(deltas, 0.99), "messages": len(deltas)}
    return hops


def settle(pids: dict[str, int], timeout_s: float = 15.0) -> None:
    """Waits for the stack's work to finish (audit and the status path lag the replies), so the
    CPU it spends on this run's messages is counted: until it uses under 10 % of a core."""
    deadline = time.monotonic() + timeout_s
    last = snapshot(pids)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = snapshot(pids)
        busy = sum(now.values()) - sum(last.values())
        last = now
        if busy < 0.05:
            return


SERVICES = ("gateway", "gateway-forwarder", "router", "flow-engine", "sender", "audit")
SERVERS = ("kafka", "postgresql", "ferretdb")


def report(result: dict[str, Any]) -> None:
    r = result
    print(f"\n--rate {r['rate']:g} msg/s for {r['seconds']:g}s: {r['customers']} customers "
          f"({r['completed']} finished all turns), {r['accepted']} messages accepted, {r['rejected']} not "
          f"{r['http']}")
    print(f"  offered {r['rate']:.1f} msg/s   carried {r['carried_rate']:.1f} msg/s "
          f"(replies over {r['span_s']:.1f}s)")
    print(f"  webhook ack        p50 {r['ack_p50_ms']:7.1f} ms   p99 {r['ack_p99_ms']:7.1f} ms   "
          f"(status webhooks: p50 {r['status_ack_p50_ms']:.1f} ms, p99 {r['status_ack_p99_ms']:.1f} ms; "
          f"{r['statuses_posted']} acknowledged, 3 per reply)")
    print(f"  end to end         p50 {r['e2e_p50_ms']:7.1f} ms   p90 {r['e2e_p90_ms']:7.1f} ms   "
          f"p99 {r['e2e_p99_ms']:7.1f} ms   max {r['e2e_max_ms']:7.1f} ms")
    print(f"  replies            missing {r['missing']}   duplicated {r['duplicated']}   unexpected "
          f"{r['unexpected']}   order violations {r['order_violations']}")
    cpu = r["cpu_ms_per_msg"]
    stack_names = [n for n in (*SERVICES, *SERVERS) if n in cpu]
    idle = r["idle_cpu_ms_per_msg"]
    print("  CPU ms per customer message (its webhook, its reply, 3 status webhooks, audit of all);")
    print(f"  'of it idle': what the process burns idle over the same time (the stack idles at "
          f"{r['idle_pct']:.0f} % of a core)")
    for name in stack_names:
        print(f"    {name:<18} {cpu[name]:7.2f}   of it idle {idle[name]:6.2f}")
    print(f"    {'= the stack':<18} {sum(cpu[n] for n in stack_names):7.2f}   of it idle "
          f"{sum(idle[n] for n in stack_names):6.2f}")
    for name in ("fake-graph-api", "load generator"):
        if name in cpu:
            print(f"    {name:<18} {cpu[name]:7.2f}   (stands in for Meta, not counted above)")
    print(f"  load generator     {r['load_cpu_sending_pct']:.0f} % of one core while sending; schedule lag "
          f"p50 {r['lag_p50_ms']:.2f} ms, p99 {r['lag_p99_ms']:.2f} ms, max {r['lag_max_ms']:.2f} ms; "
          f"{r['connections']} connections")
    if r["load_cpu_sending_pct"] > 70:
        print("  WARNING: the load generator was busy: figures at this rate may understate the stack")
    elif r["lag_p99_ms"] > 20:
        print("  note: sends were late though the load generator was mostly idle: the machine's CPUs were "
              "saturated (it shares them with the stack); latencies count from the schedule, so this is included")
    if r.get("hops"):
        print("  hop by hop (Kafka record timestamps: from the record a service consumed to the one it produced;"
              " means add up)")
        for name, hop in r["hops"].items():
            print(f"    {name:<18} mean {hop['mean_ms']:7.1f} ms   p50 {hop['p50_ms']:7.1f} ms   "
                  f"p99 {hop['p99_ms']:7.1f} ms   ({hop['messages']} messages)")
    print(f"  ({os.cpu_count()} CPUs)", flush=True)


def saturated(r: dict[str, Any]) -> bool:
    return (r["carried_rate"] < 0.95 * r["rate"] or r["missing"] > 0
            or r["e2e_p99_ms"] > 1000 * SATURATED_P99_S)


def sweep(target: Target, args: argparse.Namespace) -> None:
    rates = [float(x) for x in args.sweep_rates.split(",")]
    results = []
    for rate in rates:
        result = one_run(target, args, rate)
        report(result)
        results.append(result)
        if saturated(result):
            print(f"  saturated at {rate:g} msg/s", flush=True)
            break
        time.sleep(2.0)
    names = [n for n in (*SERVICES, *SERVERS) if n in results[0]["cpu_ms_per_msg"]]
    print("\noffered  carried  e2e p50   p90     p99     max ms  missing  stack CPU ms/msg  "
          + "  ".join(n[:10] for n in names))
    for r in results:
        cpu = r["cpu_ms_per_msg"]
        print(f"{r['rate']:7.0f}  {r['carried_rate']:7.1f}  {r['e2e_p50_ms']:7.0f} {r['e2e_p90_ms']:7.0f} "
              f"{r['e2e_p99_ms']:7.0f} {r['e2e_max_ms']:7.0f}  {r['missing']:7d}  {sum(cpu[n] for n in names):16.1f}  "
              + "  ".join(f"{cpu[n]:10.2f}" for n in names))
    plot(results, names, ROOT / "benchmarks" / "pipeline_e2e.png")


def plot(results: list[dict[str, Any]], names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = [r["rate"] for r in results]
    fig, (lat, cpu) = plt.subplots(1, 2, figsize=(13, 5))
    for key, label in (("e2e_p50_ms", "e2e p50"), ("e2e_p90_ms", "e2e p90"), ("e2e_p99_ms", "e2e p99"),
                       ("e2e_max_ms", "e2e max"), ("ack_p99_ms", "webhook ack p99")):
        lat.plot(rates, [r[key] for r in results], marker="o", label=label)
    lat.axhline(1000 * SATURATED_P99_S, color="grey", linestyle=":", label="1 s")
    lat.set(xlabel="offered customer messages/s", ylabel="ms", yscale="log", title="Latency")
    lat.legend()
    bottom = [0.0] * len(results)
    for name in names:
        values = [r["cpu_ms_per_msg"][name] for r in results]
        cpu.bar([str(int(x)) for x in rates], values, bottom=bottom, label=name)
        bottom = [b + v for b, v in zip(bottom, values)]
    cpu.set(xlabel="offered customer messages/s", ylabel="CPU ms per customer message",
            title="CPU per message (the stack, by process)")
    cpu.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"\nplot written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=20.0, help="customer messages per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of load (per step in a sweep)")
    parser.add_argument("--turns", type=int, default=2, help="rounds of the demo flow per customer (2 messages each)")
    parser.add_argument("--think", type=float, default=0.5, help="a customer's seconds before the next message")
    parser.add_argument("--drain", type=float, default=30.0, help="seconds to wait for the last replies")
    parser.add_argument("--sweep", action="store_true", help="step the rate up to saturation, plot")
    parser.add_argument("--sweep-rates", default="10,20,40,60,80,120,160,240")
    parser.add_argument("--number-rate", type=int, default=0,
                        help="set the demo number's send limit first (messages/s, 1..1000)")
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--gateway-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--fake-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        run_load(args)
        return
    target = find_or_start_stack(args)
    try:
        if args.sweep:
            sweep(target, args)
        else:
            report(one_run(target, args, args.rate))
    finally:
        if target.cleanup:
            target.cleanup()


if __name__ == "__main__":
    main()
