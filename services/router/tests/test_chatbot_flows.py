"""A chatbot may only point at a live flow of its own organization (the flow engine is asked)."""

from __future__ import annotations

import json
from uuid import UUID, uuid4

import httpx
import pytest

from pytake_plumbing.auth import Principal, Role
from pytake_router.adapters.db.tables import Chatbot, WhatsAppNumber
from pytake_router.adapters.flow_directory import HttpFlowDirectory
from pytake_router.domain.errors import NotFound, Unavailable, UnknownFlow
from pytake_router.service.management import Management
from pytake_router.service.schemas import ChatbotCreate, ChatbotUpdate

ORG_A, ORG_B = uuid4(), uuid4()
FLOW_A, FLOW_B = uuid4(), uuid4()


class FakeFlows:
    """The flow engine's view: which flow belongs to which organization."""

    def __init__(self, flows: dict[UUID, UUID], *, down: bool = False) -> None:
        self._flows = flows
        self._down = down
        self.asked: list[tuple[UUID, UUID]] = []

    async def flow_exists(self, organization_id: UUID, flow_id: UUID) -> bool:
        self.asked.append((organization_id, flow_id))
        if self._down:
            raise Unavailable("flows cannot be checked right now; try again later")
        return self._flows.get(flow_id) == organization_id


class FakeRegistry:
    def __init__(self, number: WhatsAppNumber) -> None:
        self.number = number
        self.chatbots: dict[UUID, Chatbot] = {}

    async def number_by_id(self, organization_id: UUID, number_id: UUID) -> WhatsAppNumber | None:
        ok = organization_id == self.number.organization_id and number_id == self.number.id
        return self.number if ok else None

    async def chatbot(self, organization_id: UUID, chatbot_id: UUID) -> Chatbot | None:
        found = self.chatbots.get(chatbot_id)
        return found if found is not None and found.organization_id == organization_id else None

    async def clear_default(self, organization_id: UUID, number_id: UUID, keep: UUID | None) -> None:
        return None

    def add(self, row: Chatbot) -> None:
        row.id = row.id or uuid4()
        self.chatbots[row.id] = row


class FakeUow:
    """One in-memory transaction; counts commits, records announcements."""

    def __init__(self, registry: FakeRegistry) -> None:
        self.registry = registry
        self.commits = 0
        self.announced: list[object] = []

    def __call__(self) -> FakeUow:
        return self

    async def __aenter__(self) -> FakeUow:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def announce(self, spec: object, event: object, key: str) -> None:
        self.announced.append(event)

    async def flush(self) -> None:
        return None

    async def commit(self) -> None:
        self.commits += 1


def admin_of(organization_id: UUID) -> Principal:
    return Principal(user_id=uuid4(), organization_id=organization_id, role=Role.ORG_ADMIN)


def setup(flows: FakeFlows) -> tuple[Management, FakeUow, WhatsAppNumber]:
    number = WhatsAppNumber(id=uuid4(), organization_id=ORG_A, phone_number_id="100", meta_app_id="1")
    uow = FakeUow(FakeRegistry(number))
    return Management(uow, secrets=None, passwords=None, flows=flows), uow, number  # type: ignore[arg-type]


async def test_a_chatbot_cannot_be_created_on_another_organizations_flow() -> None:
    flows = FakeFlows({FLOW_A: ORG_A, FLOW_B: ORG_B})
    management, uow, number = setup(flows)
    with pytest.raises(UnknownFlow) as refused:
        await management.create_chatbot(admin_of(ORG_A), ChatbotCreate(number_id=number.id, name="x", flow_id=FLOW_B))
    assert (refused.value.status, refused.value.code) == (422, "unknown_flow")
    assert refused.value.message == f"flow {FLOW_B} does not exist in your organization"
    assert flows.asked == [(ORG_A, FLOW_B)]  # asked about the caller's organization, never the flow's owner
    assert uow.registry.chatbots == {} and uow.commits == 0 and uow.announced == []

    created = await management.create_chatbot(admin_of(ORG_A),
                                              ChatbotCreate(number_id=number.id, name="x", flow_id=FLOW_A))
    assert created.flow_id == FLOW_A and uow.commits == 1


async def test_a_chatbot_cannot_be_moved_to_another_organizations_or_a_made_up_flow() -> None:
    flows = FakeFlows({FLOW_A: ORG_A, FLOW_B: ORG_B})
    management, uow, number = setup(flows)
    chatbot = await management.create_chatbot(admin_of(ORG_A),
                                              ChatbotCreate(number_id=number.id, name="x", flow_id=FLOW_A))
    for foreign in (FLOW_B, uuid4()):
        with pytest.raises(UnknownFlow):
            await management.update_chatbot(admin_of(ORG_A), chatbot.id, ChatbotUpdate(flow_id=foreign))
        assert chatbot.flow_id == FLOW_A
    assert uow.commits == 1
    # A change that leaves the flow alone does not ask the flow engine.
    asked = len(flows.asked)
    await management.update_chatbot(admin_of(ORG_A), chatbot.id, ChatbotUpdate(name="renamed"))
    assert len(flows.asked) == asked and chatbot.name == "renamed"


async def test_when_the_flow_engine_cannot_answer_nothing_is_written() -> None:
    management, uow, number = setup(FakeFlows({FLOW_A: ORG_A}, down=True))
    with pytest.raises(Unavailable) as refused:
        await management.create_chatbot(admin_of(ORG_A), ChatbotCreate(number_id=number.id, name="x", flow_id=FLOW_A))
    assert refused.value.status == 503
    assert uow.registry.chatbots == {} and uow.commits == 0


async def test_another_organizations_number_is_not_found_before_any_flow_is_checked() -> None:
    flows = FakeFlows({FLOW_B: ORG_B})
    management, _, number = setup(flows)
    with pytest.raises(NotFound):
        await management.create_chatbot(admin_of(ORG_B), ChatbotCreate(number_id=number.id, name="x", flow_id=FLOW_B))
    assert flows.asked == []


# --- the HTTP adapter -----------------------------------------------------------------------------


def directory(handler: httpx.MockTransport) -> HttpFlowDirectory:
    return HttpFlowDirectory("http://flow-engine/", "secret-token", transport=handler)


async def test_the_adapter_asks_the_flow_engines_internal_api() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == f"/internal/v1/organizations/{ORG_A}/flows/{FLOW_A}":
            return httpx.Response(200, json={"flow_id": str(FLOW_A), "organization_id": str(ORG_A)})
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no such live flow"}})

    flows = directory(httpx.MockTransport(answer))
    try:
        assert await flows.flow_exists(ORG_A, FLOW_A) is True
        assert await flows.flow_exists(ORG_A, FLOW_B) is False
    finally:
        await flows.close()
    assert all(request.headers["X-Internal-Token"] == "secret-token" for request in seen)


async def test_the_adapter_trusts_only_an_answer_about_the_flow_it_asked_for() -> None:
    def elsewhere(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=json.dumps({"flow_id": str(FLOW_A), "organization_id": str(ORG_B)}))

    flows = directory(httpx.MockTransport(elsewhere))
    try:
        assert await flows.flow_exists(ORG_A, FLOW_A) is False
    finally:
        await flows.close()


@pytest.mark.parametrize("failure", ["unreachable", "401", "500", "garbage"])
async def test_the_adapter_reports_a_flow_engine_that_cannot_answer(failure: str) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if failure == "unreachable":
            raise httpx.ConnectError("connection refused", request=request)
        if failure == "garbage":
            return httpx.Response(200, content=b"<html>proxy</html>")
        return httpx.Response(int(failure), json={"error": {"code": "x", "message": "x"}})

    flows = directory(httpx.MockTransport(answer))
    try:
        with pytest.raises(Unavailable) as refused:
            await flows.flow_exists(ORG_A, FLOW_A)
    finally:
        await flows.close()
    assert refused.value.status == 503 and refused.value.code == "unavailable"
