"""Use cases on flows: drafts, immutable published versions, rollback, simulation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from ..adapters.db.tables import Flow, FlowVersion
from ..adapters.db.unit_of_work import SqlUnitOfWork
from ..domain.executor import (
    ConversationState,
    Inbound,
    LoadedFlow,
    Step,
    advance,
    begin,
    resume,
)
from ..domain.flow import BUILTIN_VARIABLES, FlowDefinition, check_definition, jump_targets
from .conversations import ConversationEngine, TxRuntime

MAX_SIMULATION_INPUTS = 100


class FlowNotFound(LookupError):
    pass


class FlowConflict(RuntimeError):
    pass


class FlowInvalid(ValueError):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} problem(s) in the flow")
        self.errors = errors


@dataclass
class FlowView:
    flow: Flow
    latest_version: int | None


@dataclass
class Simulation:
    flow_version: int
    transcript: list[dict[str, Any]] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)
    status: str = "active"
    node_id: str = ""
    error: str | None = None


async def _check(tx: SqlUnitOfWork, organization_id: UUID, flow_id: UUID,
                 document: Any) -> FlowDefinition:
    """Every problem of the document, the graph and its jump targets, or the checked flow."""
    checked, errors = check_definition(document)
    if checked is not None:
        for target in sorted(jump_targets(checked), key=str):
            if target == flow_id:
                continue
            if await tx.flows.latest_version_number(organization_id, target) is None:
                errors.append({"loc": ["nodes"], "msg": f"jump target flow {target} has no published version"})
    if errors or checked is None:
        raise FlowInvalid(errors)
    return checked


async def _publish(tx: SqlUnitOfWork, organization_id: UUID, flow_id: UUID, document: dict[str, Any],
                   by: UUID | None, source_version: int | None = None) -> int:
    number = await tx.flows.next_version_number(organization_id, flow_id)
    tx.flows.add(FlowVersion(organization_id=organization_id, flow_id=flow_id, version=number, definition=document,
                             published_by=by, source_version=source_version))
    return number


def _document(flow: FlowDefinition) -> dict[str, Any]:
    return flow.model_dump(mode="json", exclude_none=True)


async def publish_flow(uow: SqlUnitOfWork, organization_id: UUID, flow_id: UUID, name: str,
                       definition: dict[str, Any]) -> int:
    """Validate and publish `definition` as the flow's next version; returns its number (the seeding CLI).

    Publishing the same definition as the latest version is a no-op (idempotent seeding).
    """
    checked = FlowDefinition.model_validate(definition)
    async with uow as tx:
        flow = await tx.flows.flow(organization_id, flow_id, lock=True)
        if flow is None:
            tx.flows.add(Flow(id=flow_id, organization_id=organization_id, name=name, draft=definition))
            await tx.session.flush()
        latest = await tx.flows.latest_version(organization_id, flow_id)
        document = _document(checked)
        if latest is not None and latest.definition == document:
            return latest.version
        number = await _publish(tx, organization_id, flow_id, document, None)
        await tx.commit()
        return number


class FlowService:
    def __init__(self, uow_factory: Callable[[], SqlUnitOfWork], engine: ConversationEngine,
                 clock: Callable[[], datetime]) -> None:
        self._uow_factory = uow_factory
        self._engine = engine
        self._clock = clock

    async def _flow(self, tx: SqlUnitOfWork, organization_id: UUID, flow_id: UUID, lock: bool = False) -> Flow:
        flow = await tx.flows.flow(organization_id, flow_id, lock=lock)
        if flow is None:
            raise FlowNotFound(flow_id)
        return flow

    async def create(self, organization_id: UUID, name: str, draft: dict[str, Any] | None) -> FlowView:
        async with self._uow_factory() as tx:
            flow = Flow(id=uuid4(), organization_id=organization_id, name=name, draft=draft)
            tx.flows.add(flow)
            await tx.session.flush()
            await tx.session.refresh(flow)
            await tx.commit()
            return FlowView(flow, None)

    async def list(self, organization_id: UUID, limit: int, offset: int) -> list[FlowView]:
        async with self._uow_factory() as tx:
            flows = await tx.flows.flows(organization_id, limit, offset)
            return [FlowView(flow, await tx.flows.latest_version_number(organization_id, flow.id)) for flow in flows]

    async def get(self, organization_id: UUID, flow_id: UUID) -> FlowView:
        async with self._uow_factory() as tx:
            flow = await self._flow(tx, organization_id, flow_id)
            return FlowView(flow, await tx.flows.latest_version_number(organization_id, flow_id))

    async def update(self, organization_id: UUID, flow_id: UUID, name: str | None,
                     draft: dict[str, Any] | None) -> FlowView:
        async with self._uow_factory() as tx:
            flow = await self._flow(tx, organization_id, flow_id, lock=True)
            if name is not None:
                flow.name = name
            if draft is not None:
                flow.draft = draft
            flow.updated_at = self._clock()
            await tx.session.flush()
            await tx.commit()
            return FlowView(flow, await self._latest(organization_id, flow_id))

    async def _latest(self, organization_id: UUID, flow_id: UUID) -> int | None:
        async with self._uow_factory() as tx:
            return await tx.flows.latest_version_number(organization_id, flow_id)

    async def delete(self, organization_id: UUID, flow_id: UUID) -> None:
        async with self._uow_factory() as tx:
            flow = await self._flow(tx, organization_id, flow_id, lock=True)
            flow.deleted_at = self._clock()
            await tx.commit()

    async def validate(self, organization_id: UUID, flow_id: UUID | None, document: Any) -> None:
        async with self._uow_factory() as tx:
            await _check(tx, organization_id, flow_id or uuid4(), document)

    async def publish(self, organization_id: UUID, flow_id: UUID, by: UUID | None) -> int:
        """Publish the draft as the next immutable version (422 with every problem when it is not valid)."""
        async with self._uow_factory() as tx:
            flow = await self._flow(tx, organization_id, flow_id, lock=True)
            if flow.draft is None:
                raise FlowInvalid([{"loc": ["draft"], "msg": "the flow has no draft to publish"}])
            checked = await _check(tx, organization_id, flow_id, flow.draft)
            number = await _publish(tx, organization_id, flow_id, _document(checked), by)
            await tx.commit()
            return number

    async def versions(self, organization_id: UUID, flow_id: UUID) -> list[FlowVersion]:
        async with self._uow_factory() as tx:
            await self._flow(tx, organization_id, flow_id)
            return await tx.flows.versions(organization_id, flow_id)

    async def version(self, organization_id: UUID, flow_id: UUID, version: int) -> FlowVersion:
        async with self._uow_factory() as tx:
            await self._flow(tx, organization_id, flow_id)
            row = await tx.flows.version(organization_id, flow_id, version)
            if row is None:
                raise FlowNotFound(f"{flow_id} v{version}")
            return row

    async def rollback(self, organization_id: UUID, flow_id: UUID, version: int, by: UUID | None) -> int:
        """Republish an earlier version as the newest one; running conversations keep their version."""
        async with self._uow_factory() as tx:
            await self._flow(tx, organization_id, flow_id, lock=True)
            old = await tx.flows.version(organization_id, flow_id, version)
            if old is None:
                raise FlowNotFound(f"{flow_id} v{version}")
            latest = await tx.flows.latest_version_number(organization_id, flow_id)
            if latest == version:
                raise FlowConflict(f"version {version} is already the newest")
            number = await _publish(tx, organization_id, flow_id, old.definition, by, source_version=version)
            await tx.commit()
            return number

    async def simulate(self, organization_id: UUID, flow_id: UUID, version: int,
                       inputs: list[Inbound]) -> Simulation:
        """Run a version against scripted customer messages: no WhatsApp, no Kafka, nothing stored.

        Delays pass at once; a handoff pauses the bot for the rest of the script.
        """
        async with self._uow_factory() as tx:
            await self._flow(tx, organization_id, flow_id)
            flows = self._engine.flows
            loaded = await flows.version(tx, organization_id, flow_id, version)
            if loaded is None:
                raise FlowNotFound(f"{flow_id} v{version}")
            runtime = TxRuntime(tx, organization_id, flows, self._engine.http)
            return await simulate(loaded, inputs, self._clock(), runtime, self._engine)


async def simulate(loaded: LoadedFlow, inputs: list[Inbound], now: datetime, runtime: Any,
                   engine: ConversationEngine) -> Simulation:
    result = Simulation(flow_version=loaded.version)
    state: ConversationState | None = None
    flow = loaded

    def record(step: Step) -> None:
        for message in step.messages:
            result.transcript.append({"from": "bot", "message": message.model_dump(mode="json")})

    for inbound in inputs[:MAX_SIMULATION_INPUTS]:
        result.transcript.append({"from": "customer", "text": inbound.text, "reply_id": inbound.reply_id})
        if state is None or state.status == "ended":
            flow = loaded
            state = begin(flow.definition, {"contact_name": "Simulated customer", "contact_id": "simulator"})
        step, error = await engine.execute(advance(flow, state, inbound, now, runtime, engine.limits.max_iterations))
        while step is not None and step.state.status == "sleeping":
            record(step)
            result.transcript.append({"from": "system", "text": f"waited until {step.state.wake_at}"})
            step, error = await engine.execute(
                resume(step.flow, step.state, step.state.wake_at or now, runtime, engine.limits.max_iterations))
        if step is None:
            result.transcript.append({"from": "system", "text": f"conversation parked: {error}"})
            result.error = error
            assert state is not None
            state.status = "failed"
            continue
        record(step)
        if step.handed_off:
            result.transcript.append({"from": "system", "text": "handed off to a person; the bot stays silent"})
        flow, state = step.flow, step.state
    if state is not None:
        result.variables = {k: v for k, v in state.variables.items() if k not in BUILTIN_VARIABLES}
        result.status = state.status
        result.node_id = state.node_id
    return result
