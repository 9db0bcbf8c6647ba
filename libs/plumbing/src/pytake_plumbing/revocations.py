"""Which access tokens the registry has revoked, known to every service without asking the router.

The router announces on its registry topic when a user's tokens end (deleted, deactivated, demoted,
password changed, a refresh token replayed) and when a session ends (logout). Every process with
an API follows that topic and refuses such tokens: a revocation reaches every service in the time
the topic takes to deliver it (well under a second), not at the token's expiry.

Only revocations younger than the access-token lifetime matter (older tokens have expired), so
a process starting up reads the topic from that far back, and is not ready before it has read
up to the end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from uuid import UUID

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from pytake_contracts import RegistryChanged, UnknownEventError, decode_event
from pytake_contracts.topics import REGISTRY_CHANGES

from .auth import Principal
from .logs import get_logger
from .settings import CommonSettings

log = get_logger(__name__)


class RevocationView:
    def __init__(self, token_ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        self._ttl_s = token_ttl_s
        self._clock = clock
        self._users: dict[UUID, float] = {}  # user id -> tokens issued before this instant are refused
        self._sessions: dict[UUID, float] = {}  # session id -> when it ended

    def apply(self, change: RegistryChanged) -> None:
        payload = change.payload
        revoked_at = (payload.revoked_at or change.occurred_at).timestamp()
        if payload.entity == "user" and payload.change in ("tokens_revoked", "deleted"):
            self._users[payload.entity_id] = max(revoked_at, self._users.get(payload.entity_id, 0.0))
        elif payload.entity == "session" and payload.change == "revoked":
            self._sessions[payload.entity_id] = revoked_at
        else:
            return
        self._forget_expired()

    def refuses(self, principal: Principal) -> bool:
        revoked_at = self._users.get(principal.user_id)
        if revoked_at is not None and (principal.issued_at is None or principal.issued_at < revoked_at):
            return True
        return principal.session_id is not None and principal.session_id in self._sessions

    def __len__(self) -> int:
        return len(self._users) + len(self._sessions)

    def _forget_expired(self) -> None:
        # Every token issued before this has expired: its revocation need not be remembered.
        horizon = self._clock() - self._ttl_s - 60
        for entries in (self._users, self._sessions):
            for key in [key for key, at in entries.items() if at < horizon]:
                del entries[key]


class RevocationFeed:
    """Keeps a RevocationView up to date from the registry topic.

    A plain aiokafka consumer rather than a FastStream subscriber: every replica reads every
    partition (no consumer group, nothing committed) starting at a point in time, which needs
    manual assignment and a seek by timestamp.
    """

    def __init__(self, settings: CommonSettings, view: RevocationView, token_ttl_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._view = view
        self._lookback_s = token_ttl_s + 60
        self._clock = clock
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.caught_up = asyncio.Event()

    async def start(self) -> None:
        topic = self._settings.topic(REGISTRY_CHANGES)
        consumer = AIOKafkaConsumer(bootstrap_servers=self._settings.kafka_bootstrap_servers, group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="latest",
                                    client_id="pytake-revocations")
        await consumer.start()
        self._consumer = consumer
        partitions = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or {0})]
        consumer.assign(partitions)
        since_ms = int((self._clock() - self._lookback_s) * 1000)
        starts = await consumer.offsets_for_times({tp: since_ms for tp in partitions})
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            found = starts.get(tp)
            consumer.seek(tp, found.offset if found is not None else ends[tp])
        self._task = asyncio.create_task(self._follow(partitions, ends), name="revocation-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()

    async def ready(self) -> bool:
        return self.caught_up.is_set()

    async def _follow(self, partitions: list[TopicPartition], ends: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while True:
            if not self.caught_up.is_set():
                positions = [await consumer.position(tp) for tp in partitions]
                if all(position >= ends[tp] for position, tp in zip(positions, partitions, strict=True)):
                    self.caught_up.set()
                    log.info("revocations_caught_up", revoked=len(self._view))
            try:
                batches = await consumer.getmany(timeout_ms=500, max_records=500)
            except KafkaError as exc:
                # aiokafka reconnects by itself; this only keeps the feed alive through an outage.
                log.warning("revocation_feed_error", error=repr(exc))
                await asyncio.sleep(1.0)
                continue
            for records in batches.values():
                for record in records:
                    self._apply(record.value)

    def _apply(self, value: bytes | None) -> None:
        if value is None:
            return
        try:
            event = decode_event(value)
        except (UnknownEventError, ValidationError, ValueError) as exc:
            # Not ours to dead-letter (the registry's own consumers do): a revocation view only skips it.
            log.warning("revocation_record_unreadable", error=str(exc)[:200])
            return
        if isinstance(event, RegistryChanged):
            self._view.apply(event)
