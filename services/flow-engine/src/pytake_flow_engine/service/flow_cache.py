"""Published versions are immutable: each is parsed once and kept in memory."""

from __future__ import annotations

from collections import OrderedDict
from uuid import UUID

from ..adapters.db.unit_of_work import SqlUnitOfWork
from ..domain.executor import LoadedFlow
from ..domain.flow import FlowDefinition


class FlowCache:
    def __init__(self, size: int = 2048) -> None:
        self._size = size
        self._versions: OrderedDict[tuple[UUID, UUID, int], LoadedFlow] = OrderedDict()

    async def version(self, tx: SqlUnitOfWork, organization_id: UUID, flow_id: UUID,
                      version: int) -> LoadedFlow | None:
        key = (organization_id, flow_id, version)
        loaded = self._versions.get(key)
        if loaded is not None:
            self._versions.move_to_end(key)
            return loaded
        row = await tx.flows.version(organization_id, flow_id, version)
        if row is None:
            return None
        loaded = LoadedFlow(flow_id, version, FlowDefinition.model_validate(row.definition))
        self._versions[key] = loaded
        if len(self._versions) > self._size:
            self._versions.popitem(last=False)
        return loaded

    async def latest(self, tx: SqlUnitOfWork, organization_id: UUID, flow_id: UUID) -> LoadedFlow | None:
        """The newest published version of a flow that is not deleted; what new conversations start on.

        Looked up once per transaction: a batch of messages sees one consistent version.
        """
        key = ("latest", organization_id, flow_id)
        if key in tx.memo:
            number = tx.memo[key]
        else:
            number = tx.memo[key] = await tx.flows.latest_version_number(organization_id, flow_id)
        if number is None:
            return None
        return await self.version(tx, organization_id, flow_id, number)
