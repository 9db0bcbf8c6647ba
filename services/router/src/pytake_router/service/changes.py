"""Announcing registry changes so every replica's caches (routes, webhook secrets,
credentials) drop stale entries. Written to the outbox inside the change's transaction."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

import structlog

from pytake_contracts import RegistryChanged, RegistryChangedPayload
from pytake_contracts.topics import REGISTRY_CHANGES
from pytake_plumbing.auth import NO_ORGANIZATION

from .ports import Transaction

PRODUCER = "router"


def announce(tx: Transaction, *, entity: str, entity_id: UUID, change: str, organization_id: UUID,
             phone_number_id: str | None = None, meta_app_id: str | None = None,
             revoked_at: datetime | None = None) -> None:
    correlation = structlog.contextvars.get_contextvars().get("correlation_id") or uuid4().hex
    event = RegistryChanged(
        correlation_id=str(correlation),
        producer=PRODUCER,
        organization_id=organization_id,
        payload=RegistryChangedPayload(entity=entity, entity_id=entity_id, change=change,
                                       phone_number_id=phone_number_id, meta_app_id=meta_app_id,
                                       revoked_at=revoked_at),
    )
    tx.announce(REGISTRY_CHANGES, event, str(organization_id))


def revoke_user_tokens(tx: Transaction, user_id: UUID, organization_id: UUID | None, now: datetime) -> None:
    """End every session of the user: refresh tokens here, access tokens wherever they are checked."""
    announce(tx, entity="user", entity_id=user_id, change="tokens_revoked",
             organization_id=organization_id or NO_ORGANIZATION, revoked_at=now)


def revoke_session(tx: Transaction, session_id: UUID, organization_id: UUID | None, now: datetime) -> None:
    announce(tx, entity="session", entity_id=session_id, change="revoked",
             organization_id=organization_id or NO_ORGANIZATION, revoked_at=now)
