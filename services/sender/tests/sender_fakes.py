"""In-memory stand-ins for the sender's ports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

from pytake_sender.adapters.db.repository import ClaimRequest, Delivery, Outcome, StatusJoin, StatusSeen
from pytake_sender.domain.delivery_status import moves_forward
from pytake_plumbing.backoff import Backoff
from pytake_sender.service.send import SendPolicy
from pytake_sender.service.throughput import NumberPaused, Permit

ORG = uuid4()
NO_WAIT = SendPolicy(max_attempts=3, retry_window_s=0.0, backoff=Backoff(0.0, 0.0), uncertain_resolve_s=10.0,
                     spam_pause_s=60.0, poll_s=0.5)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class FakeGraph:
    """Answers each send with the next scripted outcome: an exception to raise, or success."""

    def __init__(self, script: list[BaseException] | None = None, on_send=None) -> None:  # type: ignore[no-untyped-def]
        self.script = list(script or [])
        self.calls: list[dict[str, Any]] = []
        self.on_send = on_send

    async def send(self, phone_number_id: str, access_token: str, body: dict[str, Any]) -> str:
        self.calls.append({"phone_number_id": phone_number_id, "token": access_token, "body": body})
        if self.on_send:
            self.on_send(body)
        if self.script:
            raise self.script.pop(0)
        return f"wamid.{len(self.calls)}"


class FakeCredentials:
    def __init__(self) -> None:
        self.forgotten: list[tuple[UUID, str]] = []

    async def access_token(self, organization_id: UUID, phone_number_id: str) -> str | None:
        return "token" if organization_id == ORG else None

    def forget(self, organization_id: UUID, phone_number_id: str) -> None:
        self.forgotten.append((organization_id, phone_number_id))


@dataclass
class Row:
    organization_id: UUID
    request: ClaimRequest
    status: str = "sending"
    claim_token: UUID | None = field(default_factory=uuid4)
    wamid: str | None = None
    attempts: int = 0
    error_code: int | None = None
    error_message: str | None = None
    delivery_status: str | None = None
    changed_at: float = 0.0


class FakeDeliveries:
    def __init__(self, clock: FakeClock | None = None) -> None:
        self.rows: dict[UUID, Row] = {}
        self.clock = clock or FakeClock()

    def _delivery(self, row: Row, status: str | None = None) -> Delivery:
        return Delivery(status or row.status, row.claim_token, row.wamid, row.attempts, row.error_code,
                        row.error_message, self.clock.now - row.changed_at)

    async def claim(self, request: ClaimRequest) -> Delivery:
        row = self.rows.get(request.request_id)
        if row is None:
            row = self.rows[request.request_id] = Row(request.organization_id, request, changed_at=self.clock.now)
            return self._delivery(row, "new")
        if row.organization_id != request.organization_id:
            return Delivery("foreign", None)
        return self._delivery(row)

    async def record(self, outcome: Outcome) -> bool:
        row = self.rows[outcome.request_id]
        if row.claim_token != outcome.claim_token or row.status not in ("sending", "uncertain"):
            return False
        row.status, row.attempts, row.wamid = outcome.status, outcome.attempts, outcome.wamid
        row.error_code, row.error_message, row.changed_at = outcome.error_code, outcome.error_message, self.clock.now
        return True

    async def begin_attempt(self, organization_id: UUID, request_id: UUID, claim_token: UUID, attempt: int) -> bool:
        row = self.rows[request_id]
        if row.claim_token != claim_token or row.status != "sending":
            return False
        row.attempts, row.changed_at = attempt, self.clock.now
        return True

    async def get(self, organization_id: UUID, request_id: UUID) -> Delivery | None:
        row = self.rows.get(request_id)
        return self._delivery(row) if row and row.organization_id == organization_id else None

    async def take_over(self, organization_id: UUID, request_id: UUID, expected_token: UUID | None) -> UUID | None:
        row = self.rows[request_id]
        if row.status not in ("sending", "uncertain") or row.claim_token != expected_token:
            return None
        row.claim_token, row.status, row.changed_at = uuid4(), "sending", self.clock.now
        return row.claim_token

    async def join_statuses(self, statuses: Sequence[StatusSeen]) -> list[StatusJoin | None]:
        return [self.join_status(s.organization_id, s.request_id, s.wamid, s.status) for s in statuses]

    def join_status(self, organization_id: UUID, request_id: UUID | None, wamid: str,
                    status: str) -> StatusJoin | None:
        matches = [r for r in self.rows.values() if r.organization_id == organization_id
                   and (r.request.request_id == request_id if request_id else r.wamid == wamid)]
        if not matches:
            return None
        row = matches[0]
        if row.status in ("sending", "uncertain"):
            row.status, row.wamid = "sent", wamid
        moved = moves_forward(row.delivery_status, status)
        if moved:
            row.delivery_status = status
        return StatusJoin(row.request.request_id, row.request.phone_number_id, row.request.recipient,
                          row.request.conversation_id, row.request.contact_key, row.wamid or wamid, moved)


class FreeGate:
    def __init__(self) -> None:
        self.acquired = 0
        self.released = 0
        self.paused: tuple[float, str | None] | None = None

    async def acquire(self) -> Permit:
        if self.paused:
            raise NumberPaused(self.paused[0], self.paused[1])
        self.acquired += 1
        return Permit(slot=0, usable_until=float("inf"))

    def release(self, permit: Permit, *, used: bool = True) -> None:
        self.released += 1

    def pause(self, paused_for_s: float, reason: str | None) -> None:
        self.paused = (paused_for_s, reason)


class FreeGates:
    def __init__(self) -> None:
        self.gates: dict[tuple[UUID, str], FreeGate] = {}

    def gate(self, organization_id: UUID, phone_number_id: str) -> FreeGate:
        return self.gates.setdefault((organization_id, phone_number_id), FreeGate())


class NoPairLimit:
    def delay(self, organization_id: UUID, phone_number_id: str, contact_key: str) -> float:
        return 0.0


class RecordingPauses:
    def __init__(self) -> None:
        self.paused: list[tuple[UUID, str, float, str]] = []

    async def pause(self, organization_id: UUID, phone_number_id: str, pause_s: float, reason: str) -> Any:
        from datetime import UTC, datetime, timedelta

        self.paused.append((organization_id, phone_number_id, pause_s, reason))
        return datetime.now(UTC) + timedelta(seconds=pause_s)


class RecordingPublisher:
    def __init__(self) -> None:
        self.published: list[tuple[str, Any, str]] = []

    async def publish(self, spec, event, key) -> None:  # type: ignore[no-untyped-def]
        self.published.append((spec.name, event, key))

    async def publish_all(self, items) -> None:  # type: ignore[no-untyped-def]
        self.published.extend((spec.name, event, key) for spec, event, key in items)

    @property
    def events(self) -> list[Any]:
        return [event for _, event, _ in self.published]
