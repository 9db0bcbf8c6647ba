"""PyTake under faults: two replicas of every service, steady load, one fault after another.

    uv run python benchmarks/chaos.py            # the full run (about 8 minutes)
    uv run python benchmarks/chaos.py --short    # one fault of each kind, short outages (the test suite's)

It starts a stack of its own (own namespace and ports) on the local servers of scripts/servers.sh,
which it must be free to kill and restart: two replicas of the gateway, the forwarder, the router,
the flow engine, the sender and audit (each replica a static consumer-group member, PYTAKE_REPLICA_ID),
the fake Graph API for Meta, and a round-robin TCP proxy in front of the router's and flow engine's
internal APIs (what a Kubernetes Service does for them).

Load: the demo conversation from new customers at `--rate` messages/s (benchmarks/pipeline_e2e.py's
customers, replies checked in order), Meta's three statuses per reply, and every webhook delivered
three times: two copies at once, one to each gateway replica, the third a moment later; a webhook no
copy of which was acknowledged is retried like Meta does, with backoff, until one is.

Faults, one after another, each once, with a quiet spell between them:
  - SIGKILL of each replica, restarted 5 s later;
  - SIGKILL of Kafka, restarted 10 s later; PostgreSQL stopped for 30 s; the MongoDB server for 60 s;
  - the Graph API answering 500, then 429 (code 130429), then not answering in time, 10 s each;
  - one undecodable record on every consumed topic.

Report: webhooks accepted, replies expected and received, lost (accepted and never answered, or
missing from audit), duplicate replies, order violations, dead letters by topic and reason, and each
fault's recovery time. Recovery, measured from outside:
  - a replica kill: from the restart until every partition it held (those that stood still while
    it was away) has a new committed offset; the gateway: its first 200;
  - a server or the Graph API: from its return to the first reply (audit's MongoDB: audit's first
    commit) after it.
Offsets are committed after the work is durable, so recovery includes a commit interval (the
sender's: 1 s). A restarted replica's start (about a second of CPU: imports, the app) competes with
everything else for the machine's cores; the default rate keeps a 2-core machine, which runs all
twelve replicas and the three servers, short of saturation, so that recovery shows PyTake's and not
the CPU queue's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import signal
import sys
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_e2e import Load, Pool  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
REPLICATED = ("gateway", "gateway-forwarder", "router", "flow-engine", "sender", "audit")
POISON = b"\x00chaos: not an event\xff"


def group_topics(group: str) -> list[Any]:
    """The topics a replica's main consumer group reads: its partitions stand still while it is away."""
    from pytake_contracts.topics import (
        CATALOG,
        MESSAGES_OUTBOUND,
        MESSAGES_ROUTED,
        WEBHOOK_INBOUND,
        WEBHOOK_INTAKE,
    )

    return {"gateway-forwarder": [WEBHOOK_INTAKE], "router": [WEBHOOK_INBOUND], "flow-engine": [MESSAGES_ROUTED],
            "sender": [MESSAGES_OUTBOUND], "audit": [spec for spec in CATALOG if "audit" in spec.consumers]
            }.get(group, [])


# ================================================================ load with Meta's redeliveries


def intake_partition(phone_number_id: str) -> int:
    """The intake topic is keyed by business number; its producer (librdkafka) partitions by CRC32."""
    from pytake_contracts.topics import WEBHOOK_INTAKE

    return zlib.crc32(phone_number_id.encode()) % WEBHOOK_INTAKE.partitions


def second_number(tenant: Any) -> Any:
    """A second number of the demo organization, so that both forwarder replicas have work: one number's
    webhooks all go to one intake partition. Its partition differs from the first number's in parity
    and in half, so the two land on different replicas under the round-robin and the range assignor."""
    import dataclasses
    import uuid

    from pytake_contracts.topics import WEBHOOK_INTAKE

    first, half = intake_partition(tenant.phone_number_id), WEBHOOK_INTAKE.partitions // 2
    for n in range(1, 1000):
        candidate = str(int(tenant.phone_number_id) + n)
        p = intake_partition(candidate)
        if p % 2 != first % 2 and (p < half) != (first < half):
            return dataclasses.replace(
                tenant, number_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"pytake-chaos-{candidate}")),
                phone_number_id=candidate, display_phone_number=f"+1 555 01{n:02d}",
                chatbot_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"pytake-chaos-bot-{candidate}")))
    raise RuntimeError("no second number found")


class ChaosLoad(Load):
    """Paced customers (pipeline_e2e's), each webhook delivered three times to two gateways."""

    def __init__(self, args: argparse.Namespace, gateway_ports: list[int]) -> None:
        from pytake_devstack.demo_tenant import DEMO_TENANT

        super().__init__(args)
        self.numbers = [DEMO_TENANT.phone_number_id, second_number(DEMO_TENANT).phone_number_id]
        self.gateways = [Pool(port) for port in gateway_ports]
        self.last_ok: dict[int, float] = {}        # gateway port → last 200 (wall clock)
        self.retried = 0
        self.reply_times: list[float] = []         # wall clock of every reply, for recovery times
        self.accepted_messages = 0
        self.unexpected_samples: list[dict[str, Any]] = []

    async def _post(self, pool: Pool, raw: bytes) -> int:
        try:
            status, _ = await asyncio.wait_for(pool.request(raw), 10.0)
        except (OSError, EOFError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            return 0
        if status == 200:
            self.last_ok[pool.port] = time.time()
        return status

    async def deliver(self, raw: bytes) -> int:
        backoff = 0.5
        while True:
            first = await asyncio.gather(*(self._post(pool, raw) for pool in self.gateways))
            # The third copy follows a moment later, whatever became of the first two; the message
            # counts as accepted from the first 200 (its reply may come before the third copy goes).
            self.spawn(self._third_copy(raw))
            if 200 in first:
                return 200
            if self.stop_retrying:
                return max(first)
            self.retried += 1  # Meta retries a webhook that was not acknowledged
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 8.0)

    async def _third_copy(self, raw: bytes) -> None:
        await asyncio.sleep(0.2)
        await self._post(random.choice(self.gateways), raw)

    def on_reply(self, call: dict[str, Any]) -> None:
        if call["status"] == 200:
            self.reply_times.append(call["received_at"])
        unexpected = self.unexpected
        super().on_reply(call)
        if self.unexpected > unexpected and len(self.unexpected_samples) < 5:
            customer = self.customers.get(call["body"].get("to", ""))
            self.unexpected_samples.append({"reply": call["body"], "sent": customer and [
                (i, customer.text(i)) for i, _ in customer.sent], "replied": customer and sorted(customer.replied)})

    async def drive_until(self, stop: asyncio.Event) -> None:
        start = time.perf_counter() + 0.2
        self.start_wall = self.wall(start)
        i = 0
        while not stop.is_set():
            scheduled = start + i / self.args.rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    break
                except asyncio.TimeoutError:
                    pass
            customer, index = self.next_message(scheduled)
            self.spawn(self.post_message(customer, index, scheduled))
            i += 1
        self.offered = i

    def first_reply_after(self, at: float) -> float | None:
        later = [t for t in self.reply_times if t >= at]
        return min(later) - at if later else None


# ================================================================ a Kubernetes Service, in small


class RoundRobinProxy:
    """Spreads TCP connections over a service's replicas, skipping those that refuse."""

    def __init__(self, port: int, upstreams: list[int]) -> None:
        self.port, self.upstreams, self.next = port, upstreams, 0
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(len(self.upstreams)):
            port = self.upstreams[self.next % len(self.upstreams)]
            self.next += 1
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
            return
        writer.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server:
            self.server.close()


# ================================================================ watching progress in Kafka


class Progress:
    """Committed offsets of PyTake's consumer groups, and the topics' end offsets, read from Kafka."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.admin: Any = None

    async def start(self) -> None:
        from pytake_devstack.kafka_io import Admin

        self.admin = Admin(self.settings.kafka_bootstrap_servers, timeout_s=3.0)

    async def stop(self) -> None:
        self.admin = None  # librdkafka's admin client holds nothing to close

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def committed(self, group: str) -> dict[Any, int]:
        """Every partition of the group's topics: its committed offset, 0 before its first commit (the
        namespace's topics are new, and the group starts from the earliest record)."""
        from pytake_devstack.kafka_io import Partition

        found = await self.admin.committed(self.settings.consumer_group(group))
        committed = {}
        for spec in group_topics(group):
            topic = self.settings.topic(spec)
            for partition in range(spec.partitions):
                committed[Partition(topic, partition)] = found.get(Partition(topic, partition), 0)
        return committed

    async def ends(self, partitions: list[Any]) -> dict[Any, int]:
        return await self.admin.end_offsets(partitions)


# ================================================================ the run


@dataclass
class FaultResult:
    fault: str
    recovery_s: float | None
    detail: str = ""


@dataclass
class Chaos:
    args: argparse.Namespace
    stack: Any = None
    settings: Any = None
    load: ChaosLoad | None = None
    progress: Progress | None = None
    results: list[FaultResult] = field(default_factory=list)
    proxies: list[RoundRobinProxy] = field(default_factory=list)
    run_started: float = 0.0
    servers_were_running: set[str] = field(default_factory=set)
    poisoned: list[str] = field(default_factory=list)

    # ---------------------------------------------------------- stack

    def start_stack(self) -> None:
        from pytake_devstack.demo_tenant import DEMO_TENANT
        from pytake_devstack.paths import STATE_DIR
        from pytake_devstack.pytest_plugin import pipeline_env
        from pytake_devstack.servers import local_env, local_status, servers_script
        from pytake_devstack.stack import Stack, free_ports
        from pytake_plumbing.settings import CommonSettings

        given = [key for key in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "MONGODB_URL") if os.environ.get(key)]
        if given:
            raise SystemExit(f"chaos kills and restarts the servers: it runs on scripts/servers.sh's own, not on "
                             f"those named by {', '.join(given)}")
        self.servers_were_running = {name for name, up in local_status().items() if up}
        servers_script("up")
        servers_env = {k: v for k, v in local_env().items()
                       if k in {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "MONGODB_URL"}}
        namespace = "chaos" + secrets.token_hex(3)
        env = {
            **pipeline_env(servers_env, namespace),
            "LOG_LEVEL": "WARNING",
            "SENDER_BACKOFF_BASE_S": "0.2",
            # A send that timed out is resolved by Meta's status for it, or resent after this long.
            "GRAPH_API_TIMEOUT_S": "3",
            "SENDER_UNCERTAIN_RESOLVE_S": "20",
        }
        self.settings = CommonSettings.model_validate({**servers_env, "PYTAKE_NAMESPACE": namespace})
        self.stack = Stack(env=env, log_dir=STATE_DIR / "chaos-logs" / namespace, ports=free_ports())
        print(f"stack: namespace {namespace}, logs in {self.stack.log_dir}", flush=True)
        self.stack.prepare([DEMO_TENANT, second_number(DEMO_TENANT)])

    async def start_processes(self) -> None:
        from pytake_devstack.stack import free_port

        for service in ("router", "flow-engine"):  # their internal APIs, behind one address
            replicas = [f"{service}@{n}" for n in (1, 2)]
            for name in replicas:
                self.stack.ports[name] = free_port()
            proxy = RoundRobinProxy(self.stack.ports[service], [self.stack.ports[n] for n in replicas])
            await proxy.start()
            self.proxies.append(proxy)
        names = ["fake-graph-api", *(f"{service}@{n}" for service in REPLICATED for n in (1, 2))]
        await asyncio.to_thread(self.stack.start, names)

    async def stop_all(self) -> None:
        from pytake_devstack.pytest_plugin import _drop_namespace
        from pytake_devstack.servers import servers_script

        if self.progress:
            await self.progress.stop()
        if self.stack:
            await asyncio.to_thread(self.stack.stop)
        for proxy in self.proxies:
            await proxy.stop()
        await asyncio.to_thread(servers_script, "up")  # whatever a fault left stopped
        if self.settings:
            await asyncio.to_thread(lambda: asyncio.run(_drop_namespace(self.settings)))
        stop_again = {"kafka", "postgres", "mongo"} - self.servers_were_running
        if stop_again:
            await asyncio.to_thread(servers_script, "down", *sorted(stop_again))

    # ---------------------------------------------------------- faults

    async def quiet(self, seconds: float) -> None:
        """Lets the stack catch up between faults: the backlog of unanswered messages drains."""
        assert self.load is not None
        deadline = time.monotonic() + max(seconds, 60.0)
        await asyncio.sleep(seconds)
        while time.monotonic() < deadline and self.stale_outstanding() > 0:
            await asyncio.sleep(0.5)
        load = self.load
        if self.stale_outstanding():
            print(f"           {self.stale_outstanding()} messages still unanswered after {max(seconds, 60.0):g} s "
                  f"(replies {len(load.reply_times)}, unexpected {load.unexpected}, duplicated {load.duplicates})",
                  flush=True)

    def stale_outstanding(self) -> int:
        """Accepted messages older than 3 s still without their reply."""
        assert self.load is not None
        old = time.time() - 3.0
        return sum(1 for c in self.load.customers.values() for index, at in c.sent
                   if at < old and index not in c.replied)

    async def kill_replica(self, name: str) -> FaultResult:
        stack = self.stack
        service = name.split("@")[0]
        group = service if group_topics(service) else None
        before = await self.progress.committed(group) if group else {}
        process = stack.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait)
        await asyncio.sleep(self.args.restart_after)
        stalled: set[Any] = set()
        if group:
            now = await self.progress.committed(group)
            ends = await self.progress.ends(list(now))
            stalled = {tp for tp, offset in now.items() if offset == before.get(tp) and ends.get(tp, 0) > offset}
        restarted = time.time()
        # Watched while the process starts: it consumes before it reports ready (which also waits
        # for its token-revocation feed to catch up).
        def start() -> float:
            stack.start([name])
            return time.time() - restarted

        starting = asyncio.create_task(asyncio.to_thread(start))
        label = f"SIGKILL {name}, restart after {self.args.restart_after:g} s"
        if service == "gateway":
            port = stack.ports[name]
            recovery = await self.wait_for(lambda: self.load.last_ok.get(port, 0) >= restarted, restarted)
            measured = "first webhook it acknowledged"
        elif not stalled:
            recovery, measured = None, "no partition of its stood still (nothing to take back)"
        else:
            # Every partition that stood still must move again: one of them may have been the other
            # replica's, merely slow to commit, which the first commit alone would mistake for this one's.
            async def moved() -> bool:
                now = await self.progress.committed(group)
                return all(now.get(tp, -1) > before.get(tp, -1) for tp in stalled)

            recovery = await self.wait_for_async(moved, restarted)
            measured = f"a commit on each of the {len(stalled)} partition(s) that stood still"
        return FaultResult(label, recovery, f"{measured}; ready {await starting:.1f} s after its start")

    async def wait_for(self, condition: Callable[[], bool], since: float, timeout_s: float = 90.0) -> float | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return time.time() - since
            await asyncio.sleep(0.05)
        return None

    async def wait_for_async(self, condition: Callable[[], Awaitable[bool]], since: float,
                             timeout_s: float = 90.0) -> float | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if await condition():
                    return time.time() - since
            except Exception:  # noqa: BLE001 - Kafka still coming back
                pass
            await asyncio.sleep(0.1)
        return None

    async def server_down(self, server: str, down_s: float, how: str) -> FaultResult:
        from pytake_devstack.paths import STATE_DIR
        from pytake_devstack.servers import servers_script

        if how == "kill":
            pid = int((STATE_DIR / "run" / f"{server}.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)
            while Path(f"/proc/{pid}").exists() and "Z" not in _state(pid):
                await asyncio.sleep(0.05)
        else:
            await asyncio.to_thread(servers_script, "down", server)
        await asyncio.sleep(down_s)
        audit_before = await self.progress.committed("audit") if server != "kafka" else {}
        await asyncio.to_thread(servers_script, "up", server)
        back = time.time()
        label = {"kafka": "Kafka", "postgres": "PostgreSQL", "mongo": "the MongoDB server"}[server]
        verb = "SIGKILL" if how == "kill" else "stop"
        name = f"{verb} {label}, {down_s:g} s down"
        if server == "kafka":
            await self.progress.restart()
        if server == "mongo":  # only audit writes there: its first commit after
            async def audit_moved() -> bool:
                now = await self.progress.committed("audit")
                return any(offset > audit_before.get(tp, -1) for tp, offset in now.items())

            return FaultResult(name, await self.wait_for_async(audit_moved, back), "audit's first commit")
        return FaultResult(name, await self.wait_for(lambda: self.load.first_reply_after(back) is not None, back),
                           "first reply")

    async def graph_api_fault(self, label: str, failure: dict[str, Any], for_s: float) -> FaultResult:
        import httpx

        async with httpx.AsyncClient() as client:
            await client.post(self.stack.url("fake-graph-api") + "/_fake/failures", json={**failure, "for_s": for_s})
        back = time.time() + for_s
        await asyncio.sleep(for_s)
        recovery = await self.wait_for(lambda: self.load.first_reply_after(back) is not None, back)
        return FaultResult(f"Graph API {label} for {for_s:g} s", recovery, "first reply after")

    async def poison(self) -> FaultResult:
        from pytake_contracts.topics import CATALOG
        from pytake_devstack.kafka_io import Writer

        async with Writer(self.settings.kafka_bootstrap_servers) as producer:
            self.poisoned = [self.settings.topic(spec) for spec in CATALOG if spec.consumers]
            for topic in self.poisoned:
                await producer.send(topic, POISON, key=b"chaos")
        return FaultResult(f"an undecodable record on each of {len(self.poisoned)} consumed topics", None,
                           "see dead letters")

    def plan(self) -> list[tuple[str, Callable[[], Awaitable[FaultResult]]]]:
        short = self.args.short
        replicas = ["router@1"] if short else [f"{s}@{n}" for s in REPLICATED for n in (1, 2)]
        steps: list[tuple[str, Callable[[], Awaitable[FaultResult]]]] = [
            (name, (lambda n=name: self.kill_replica(n))) for name in replicas]
        steps += [
            ("kafka", lambda: self.server_down("kafka", 3 if short else 10, "kill")),
            ("postgres", lambda: self.server_down("postgres", 5 if short else 30, "stop")),
            ("mongo", lambda: self.server_down("mongo", 5 if short else 60, "stop")),
            ("graph 500", lambda: self.graph_api_fault(
                "answering 500", {"http_status": 500, "code": 2, "message": "Service temporarily unavailable"},
                3 if short else 10)),
        ]
        if not short:
            steps += [
                ("graph 429", lambda: self.graph_api_fault(
                    "answering 429 (130429)", {"http_status": 429, "code": 130429, "message": "Rate limit hit"}, 10)),
                ("graph timeouts", lambda: self.graph_api_fault(
                    "not answering in time (sent, answered after 5 s)", {"mode": "slow", "delay_s": 5.0}, 10)),
            ]
        steps.append(("poison", self.poison))
        return steps

    # ---------------------------------------------------------- checks

    async def audited(self) -> set[str]:
        """The WhatsApp message ids audit holds for the demo organization (one pass: FerretDB filters
        `$in` over thousands of ids slowly)."""
        from pytake_plumbing.mongo import make_mongo_client

        client = make_mongo_client(self.settings.mongodb_url)
        try:
            events = client[self.settings.mongodb_database]["events"]
            return {doc["wamid"] async for doc in events.find({"organization_id": _demo_org()}, {"wamid": 1})
                    if doc.get("wamid")}
        finally:
            await client.close()

    async def dead_letters(self) -> list[dict[str, Any]]:
        from pytake_contracts import DeadLettered, decode_event
        from pytake_contracts.topics import DEAD_LETTERS
        from pytake_devstack.kafka_io import read_topics

        letters: list[dict[str, Any]] = []
        for record in await read_topics(self.settings.kafka_bootstrap_servers, [self.settings.topic(DEAD_LETTERS)]):
            if record.value == POISON:
                continue  # the poison put on this topic itself, not a letter
            try:
                event = decode_event(record.value or b"")
            except ValueError:
                letters.append({"origin_topic": "?", "consumer": "?", "error": "undecodable letter",
                                "poison": False})
                continue
            if isinstance(event, DeadLettered):
                p = event.payload
                letters.append({"origin_topic": p.origin_topic, "consumer": p.consumer,
                                "error": p.error, "poison": p.original == POISON.decode(errors="replace")})
        return letters

    # ---------------------------------------------------------- main

    async def run(self) -> dict[str, Any]:
        await asyncio.to_thread(self.start_stack)
        try:
            await self.start_processes()
            self.progress = Progress(self.settings)
            await self.progress.start()
            gateways = [self.stack.ports[f"gateway@{n}"] for n in (1, 2)]
            load_args = argparse.Namespace(rate=self.args.rate, seconds=1e9, turns=self.args.turns,
                                           think=0.5, drain=0, gateway_port=gateways[0],
                                           fake_port=self.stack.ports["fake-graph-api"])
            self.load = load = ChaosLoad(load_args, gateways)
            load.stop_retrying = False
            load.stop_following = False
            follower = asyncio.create_task(load.follow_fake())
            stop = asyncio.Event()
            driver = asyncio.create_task(load.drive_until(stop))
            self.run_started = time.time()
            await self.quiet(self.args.quiet)
            for label, step in self.plan():
                print(f"[{time.time() - self.run_started:6.1f}s] {label} ...", flush=True)
                result = await step()
                self.results.append(result)
                shown = "n/a" if result.recovery_s is None else f"{result.recovery_s:.2f} s"
                print(f"           recovery {shown} ({result.detail})", flush=True)
                await self.quiet(self.args.quiet)
            stop.set()
            await driver
            # Every accepted message's reply; a send left uncertain resolves within SENDER_UNCERTAIN_RESOLVE_S.
            deadline = time.monotonic() + self.args.drain
            while load.outstanding() and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            load.stop_retrying = True
            await asyncio.sleep(2.0)  # late duplicates
            load.stop_following = True
            await follower
            while load.tasks:
                await asyncio.sleep(0.05)
            return await self.summary()
        finally:
            await self.stop_all()

    async def summary(self) -> dict[str, Any]:
        load = self.load
        assert load is not None
        inbound = {c.wamids[i]: (c, i) for c in load.customers.values() for i, _ in c.sent}
        # Audit writes behind the replies: give it time to catch up before counting what is missing.
        deadline = time.monotonic() + 60
        while True:
            audited = await self.audited()
            missing_audit = [w for w in (*inbound, *load.reply_wamids) if w not in audited]
            if not missing_audit or time.monotonic() > deadline:
                break
            await asyncio.sleep(2.0)
        unanswered = [w for w, (c, i) in inbound.items() if i not in c.replied]
        lost = set(unanswered) | {w for w in missing_audit if w in inbound}
        letters = await self.dead_letters()
        poisoned = self.poisoned
        poison_letters = {t: sorted({l["consumer"] for l in letters if l["poison"] and l["origin_topic"] == t})
                          for t in poisoned}
        return {
            "offered": load.offered, "accepted": len(inbound), "redelivered_by_meta": load.retried,
            "replies_expected": len(inbound), "replies_received": sum(len(c.replied) for c in load.customers.values()),
            "unanswered": len(unanswered), "missing_from_audit": len(missing_audit),
            "missing_from_audit_replies": len([w for w in missing_audit if w not in inbound]),
            "lost": len(lost), "duplicates": load.duplicates, "unexpected": load.unexpected,
            "order_violations": load.order_violations, "unexpected_samples": load.unexpected_samples,
            "dead_letters": _reasons(letters), "poison_dead_lettered": poison_letters,
            "poison_missing": [t for t, consumers in poison_letters.items() if not consumers],
            "faults": [{"fault": r.fault, "recovery_s": r.recovery_s, "measured": r.detail} for r in self.results],
        }


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def _demo_org() -> str:
    from pytake_devstack.demo_tenant import DEMO_TENANT

    return DEMO_TENANT.organization_id


def _reasons(letters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    counted: dict[tuple[str, str, str], int] = {}
    for letter in letters:
        reason = letter["error"].split(":", 1)[0][:60]
        key = (letter["origin_topic"].split(".", 1)[-1], letter["consumer"], reason)
        counted[key] = counted.get(key, 0) + 1
    return [{"topic": t, "consumer": c, "reason": r, "count": n} for (t, c, r), n in sorted(counted.items())]


def report(summary: dict[str, Any]) -> None:
    s = summary
    print("\n| fault | recovery | measured as |\n| --- | --- | --- |")
    for fault in s["faults"]:
        shown = "n/a" if fault["recovery_s"] is None else f"{fault['recovery_s']:.2f} s"
        print(f"| {fault['fault']} | {shown} | {fault['measured']} |")
    print(f"\n| webhooks accepted | replies expected | received | lost | duplicate replies | order violations |"
          f"\n| --- | --- | --- | --- | --- | --- |\n| {s['accepted']} | {s['replies_expected']} | "
          f"{s['replies_received']} | {s['lost']} | {s['duplicates']} | {s['order_violations']} |")
    print(f"\n(offered {s['offered']}; Meta's redeliveries of unacknowledged webhooks {s['redelivered_by_meta']}; "
          f"unanswered {s['unanswered']}; missing from audit {s['missing_from_audit']} "
          f"({s['missing_from_audit_replies']} of them replies); unexpected replies {s['unexpected']})")
    print("\n| dead letters: topic | consumer | reason | count |\n| --- | --- | --- | --- |")
    for letter in s["dead_letters"]:
        print(f"| {letter['topic']} | {letter['consumer']} | {letter['reason']} | {letter['count']} |")
    if s["poison_missing"]:
        print(f"\nNOT dead-lettered: the undecodable record on {', '.join(s['poison_missing'])}")
    print(flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="one fault of each kind, short outages")
    parser.add_argument("--rate", type=float, default=5.0,
                        help="customer messages per second (each delivered three times, with its three statuses)")
    parser.add_argument("--turns", type=int, default=2, help="rounds of the demo flow per customer")
    parser.add_argument("--restart-after", type=float, default=5.0, help="seconds a killed replica stays down")
    parser.add_argument("--quiet", type=float, default=None, help="seconds between faults")
    parser.add_argument("--drain", type=float, default=90.0, help="seconds to wait for the last replies")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args()
    if args.quiet is None:
        args.quiet = 3.0 if args.short else 8.0
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    summary = asyncio.run(Chaos(args).run())
    report(summary)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    clean = (summary["lost"] == 0 and summary["duplicates"] == 0 and summary["order_violations"] == 0
             and not summary["poison_missing"])
    sys.exit(0 if clean else 1)


if __name__ == "__main__":
    main()
