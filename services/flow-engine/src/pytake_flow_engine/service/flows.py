"""Use cases on flows: publish a new immutable version."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from ..adapters.db.tables import Flow, FlowVersion
from ..adapters.db.unit_of_work import SqlUnitOfWork
from ..domain.flow import FlowDefinition


async def publish_flow(uow: SqlUnitOfWork, organization_id: UUID, flow_id: UUID, name: str,
                       definition: dict[str, Any]) -> int:
    """Validate and publish `definition` as the flow's next version; returns its number.

    Publishing the same definition as the latest version is a no-op (idempotent seeding).
    """
    checked = FlowDefinition.model_validate(definition)
    async with uow as tx:
        flow = await tx.flows.flow(organization_id, flow_id)
        if flow is None:
            tx.flows.add(Flow(id=flow_id, organization_id=organization_id, name=name))
            await tx.session.flush()
        latest = await tx.flows.latest_version(organization_id, flow_id)
        document = checked.model_dump(mode="json", exclude_none=True)
        if latest is not None and latest.definition == document:
            return latest.version
        number = await tx.flows.next_version_number(organization_id, flow_id)
        tx.flows.add(FlowVersion(organization_id=organization_id, flow_id=flow_id, version=number,
                                 definition=document))
        await tx.commit()
        return number
