"""Announcing registry changes so every replica's caches (routes, webhook secrets,
credentials) drop stale entries. Written to the outbox inside the change's transaction."""

from __future__ import annotations

from uuid import UUID, uuid4

import structlog

from pytake_contracts import RegistryChanged, RegistryChangedPayload
from pytake_contracts.topics import REGISTRY_CHANGES

from .ports import Transaction

PRODUCER = "router"


def announce(tx: Transaction, *, entity: str, entity_id: UUID, change: str, organization_id: UUID,
             phone_number_id: str | None = None, meta_app_id: str | None = None) -> None:
    correlation = structlog.contextvars.get_contextvars().get("correlation_id") or uuid4().hex
    event = RegistryChanged(
        correlation_id=str(correlation),
        producer=PRODUCER,
        organization_id=organization_id,
        payload=RegistryChangedPayload(entity=entity, entity_id=entity_id, change=change,
                                       phone_number_id=phone_number_id, meta_app_id=meta_app_id),
    )
    tx.announce(REGISTRY_CHANGES, event, str(organization_id))
