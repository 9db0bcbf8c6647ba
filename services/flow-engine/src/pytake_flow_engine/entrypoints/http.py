"""REST API: flows (drafts, versions, rollback, simulation) and conversations. Tenant-scoped by the token."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from pytake_plumbing.auth import AuthSettings, Principal, RevocationCheck, Role, principal_dependency, require_roles
from pytake_plumbing.bounds import NO_NUL, Limit, Offset, PgPositiveInt
from pytake_plumbing.errors import ApiError, error_responses
from pytake_plumbing.request_guard import body_limit

from ..adapters.db.tables import Conversation, FlowVersion
from ..domain.executor import Inbound
from ..domain.flow import MAX_FLOW_DOCUMENT_BYTES, FlowDraft
from ..service.conversations import ConversationConflict, ConversationEngine, ConversationNotFound
from ..service.flows import MAX_SIMULATION_INPUTS, FlowConflict, FlowInvalid, FlowNotFound, FlowService, FlowView

T = TypeVar("T")
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)]
Version = Annotated[PgPositiveInt, Path(description="A published version number.")]
InputText = Annotated[str, StringConstraints(max_length=4096, pattern=NO_NUL)]

# What each kind of operation may answer besides its success (the request guard's 413 and 422 included).
READ = error_responses(401, 404, 422)
LIST = error_responses(401, 422)
EDIT = error_responses(400, 401, 403, 404, 409, 413, 422)
CREATE = error_responses(400, 401, 403, 413, 422)
ACT = error_responses(401, 403, 404, 409, 422)
REMOVE = error_responses(401, 403, 404, 422)
RUN = error_responses(400, 401, 403, 404, 413, 422)


class FlowCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    definition: FlowDraft | None = Field(default=None, description="The draft; validated when published.")


class FlowUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    definition: FlowDraft | None = None


class FlowResponse(BaseModel):
    id: UUID
    name: str
    definition: dict[str, Any] | None = Field(description="The current draft.")
    latest_version: int | None
    created_at: datetime
    updated_at: datetime


class FlowVersionResponse(BaseModel):
    flow_id: UUID
    version: int
    definition: dict[str, Any]
    source_version: int | None = Field(description="Set when this version is a rollback to an earlier one.")
    published_by: UUID | None
    published_at: datetime


class PublishResponse(BaseModel):
    flow_id: UUID
    version: int


class ValidationResponse(BaseModel):
    valid: bool


class SimulationInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: InputText | None = None
    reply_id: str | None = Field(default=None, max_length=256, pattern=NO_NUL,
                                 description="Id of a chosen button or list row.")


class SimulationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: list[InputText | SimulationInput] = Field(min_length=1, max_length=MAX_SIMULATION_INPUTS)


class SimulationResponse(BaseModel):
    flow_id: UUID
    flow_version: int
    transcript: list[dict[str, Any]]
    variables: dict[str, Any]
    status: str
    node_id: str
    error: str | None


class ConversationResponse(BaseModel):
    id: UUID
    flow_id: UUID
    active_flow_id: UUID | None
    flow_version: int
    contact_key: str
    phone_number_id: str
    node_id: str
    status: str
    retries: int
    variables: dict[str, Any]
    wake_at: datetime | None
    error: str | None
    last_inbound_at: datetime
    expires_at: datetime
    created_at: datetime
    updated_at: datetime


def _flow(view: FlowView) -> FlowResponse:
    flow = view.flow
    return FlowResponse(id=flow.id, name=flow.name, definition=flow.draft, latest_version=view.latest_version,
                        created_at=flow.created_at, updated_at=flow.updated_at)


def _version(row: FlowVersion) -> FlowVersionResponse:
    return FlowVersionResponse(flow_id=row.flow_id, version=row.version, definition=row.definition,
                               source_version=row.source_version, published_by=row.published_by,
                               published_at=row.published_at)


def _conversation(row: Conversation) -> ConversationResponse:
    return ConversationResponse.model_validate(row, from_attributes=True)


@asynccontextmanager
async def _errors() -> AsyncIterator[None]:
    """Domain outcomes → structured HTTP errors."""
    try:
        yield
    except (FlowNotFound, ConversationNotFound) as exc:
        raise ApiError(404, "not_found", "no such resource in your organization") from exc
    except (FlowConflict, ConversationConflict) as exc:
        raise ApiError(409, "conflict", str(exc)) from exc
    except FlowInvalid as exc:
        raise ApiError(422, "invalid_flow", str(exc), exc.errors) from exc


async def _call(work: Callable[[], Awaitable[T]]) -> T:
    async with _errors():
        return await work()


def build_router(flows: FlowService, conversations: ConversationEngine, auth: AuthSettings,
                 published: Callable[[], Awaitable[None]], revocations: RevocationCheck | None = None) -> APIRouter:
    """`published` publishes committed outbox rows at once (else the background relay does, later);
    `revocations` refuses the tokens the registry revoked."""
    current = principal_dependency(auth, revocations)
    # Dependencies as defaults: string annotations (PEP 563) cannot name function locals.
    reader = Depends(current)
    editor = Depends(require_roles(current, Role.ORG_ADMIN, Role.PLATFORM_ADMIN))
    agent = Depends(require_roles(current, Role.ORG_ADMIN, Role.PLATFORM_ADMIN, Role.AGENT))
    router = APIRouter(prefix="/api/v1")

    # A flow document's bytes are bounded below the service's own body limit (413).
    document_limit = Depends(body_limit(MAX_FLOW_DOCUMENT_BYTES))

    @router.post("/flows", status_code=201, response_model=FlowResponse, tags=["flows"], responses=CREATE,
                 dependencies=[document_limit])
    async def create_flow(body: FlowCreate, who: Principal = editor) -> FlowResponse:
        draft = body.definition.document() if body.definition is not None else None
        return _flow(await _call(lambda: flows.create(who.organization_id, body.name, draft)))

    @router.get("/flows", response_model=list[FlowResponse], tags=["flows"], responses=LIST)
    async def list_flows(who: Principal = reader, limit: Limit = 50, offset: Offset = 0) -> list[FlowResponse]:
        return [_flow(view) for view in await flows.list(who.organization_id, limit, offset)]

    @router.get("/flows/{flow_id}", response_model=FlowResponse, tags=["flows"], responses=READ)
    async def get_flow(flow_id: UUID, who: Principal = reader) -> FlowResponse:
        return _flow(await _call(lambda: flows.get(who.organization_id, flow_id)))

    @router.patch("/flows/{flow_id}", response_model=FlowResponse, tags=["flows"], responses=EDIT,
                  dependencies=[document_limit])
    async def update_flow(flow_id: UUID, body: FlowUpdate, who: Principal = editor) -> FlowResponse:
        draft = body.definition.document() if body.definition is not None else None
        return _flow(await _call(lambda: flows.update(who.organization_id, flow_id, body.name, draft)))

    @router.delete("/flows/{flow_id}", status_code=204, tags=["flows"], responses=REMOVE)
    async def delete_flow(flow_id: UUID, who: Principal = editor) -> Response:
        await _call(lambda: flows.delete(who.organization_id, flow_id))
        return Response(status_code=204)

    @router.post("/flows/{flow_id}/validate", response_model=ValidationResponse, tags=["flows"], responses=READ)
    async def validate_flow(flow_id: UUID, who: Principal = reader) -> ValidationResponse:
        """Checks the draft as publishing would (422 with every problem)."""
        async def work() -> None:
            view = await flows.get(who.organization_id, flow_id)
            await flows.validate(who.organization_id, flow_id, view.flow.draft)
        await _call(work)
        return ValidationResponse(valid=True)

    @router.post("/flows/{flow_id}/publish", status_code=201, response_model=PublishResponse, tags=["flows"],
                 responses=ACT)
    async def publish_flow(flow_id: UUID, who: Principal = editor) -> PublishResponse:
        version = await _call(lambda: flows.publish(who.organization_id, flow_id, who.user_id))
        return PublishResponse(flow_id=flow_id, version=version)

    @router.get("/flows/{flow_id}/versions", response_model=list[FlowVersionResponse], tags=["flows"],
                responses=READ)
    async def list_versions(flow_id: UUID, who: Principal = reader) -> list[FlowVersionResponse]:
        return [_version(row) for row in await _call(lambda: flows.versions(who.organization_id, flow_id))]

    @router.get("/flows/{flow_id}/versions/{version}", response_model=FlowVersionResponse, tags=["flows"],
                responses=READ)
    async def get_version(flow_id: UUID, version: Version, who: Principal = reader) -> FlowVersionResponse:
        return _version(await _call(lambda: flows.version(who.organization_id, flow_id, version)))

    @router.post("/flows/{flow_id}/versions/{version}/rollback", status_code=201, response_model=PublishResponse,
                 tags=["flows"], responses=ACT)
    async def rollback(flow_id: UUID, version: Version, who: Principal = editor) -> PublishResponse:
        """Republishes an earlier version as the newest; conversations already running keep their version."""
        number = await _call(lambda: flows.rollback(who.organization_id, flow_id, version, who.user_id))
        return PublishResponse(flow_id=flow_id, version=number)

    @router.post("/flows/{flow_id}/versions/{version}/simulate", response_model=SimulationResponse,
                 tags=["flows"], responses=RUN)
    async def simulate(flow_id: UUID, version: Version, body: SimulationRequest,
                       who: Principal = agent) -> SimulationResponse:
        """Runs the version against scripted customer messages: no WhatsApp, no Kafka, nothing stored."""
        inputs = [Inbound(text=item) if isinstance(item, str) else Inbound(text=item.text, reply_id=item.reply_id)
                  for item in body.inputs]
        result = await _call(lambda: flows.simulate(who.organization_id, flow_id, version, inputs))
        return SimulationResponse(flow_id=flow_id, flow_version=result.flow_version, transcript=result.transcript,
                                  variables=result.variables, status=result.status, node_id=result.node_id,
                                  error=result.error)

    @router.get("/conversations", response_model=list[ConversationResponse], tags=["conversations"],
                responses=LIST)
    async def list_conversations(
        who: Principal = reader,
        status: Annotated[str | None, Query(max_length=16, pattern=NO_NUL)] = None,
        flow_id: UUID | None = None,
        contact_key: Annotated[str | None, Query(max_length=128, pattern=NO_NUL)] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> list[ConversationResponse]:
        rows = await conversations.search(who.organization_id, status=status, flow_id=flow_id,
                                          contact_key=contact_key, limit=limit, offset=offset)
        return [_conversation(row) for row in rows]

    @router.get("/conversations/{conversation_id}", response_model=ConversationResponse, tags=["conversations"],
                responses=READ)
    async def get_conversation(conversation_id: UUID, who: Principal = reader) -> ConversationResponse:
        return _conversation(await _call(lambda: conversations.get(who.organization_id, conversation_id)))

    @router.post("/conversations/{conversation_id}/end", response_model=ConversationResponse,
                 tags=["conversations"], responses=ACT)
    async def end_conversation(conversation_id: UUID, who: Principal = agent) -> ConversationResponse:
        row = await _call(lambda: conversations.end(who.organization_id, conversation_id))
        await published()
        return _conversation(row)

    @router.post("/conversations/{conversation_id}/release", response_model=ConversationResponse,
                 tags=["conversations"], responses=ACT)
    async def release_handoff(conversation_id: UUID, who: Principal = agent) -> ConversationResponse:
        """Gives a handed-off conversation back to the bot, which continues after the handoff node."""
        row = await _call(lambda: conversations.release(who.organization_id, conversation_id))
        await published()
        return _conversation(row)

    return router
