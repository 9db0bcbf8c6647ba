"""Each of Meta's error paths, through a real sender process against the fake Graph API
(which posts Meta's status webhooks back through the real gateway and router)."""

from __future__ import annotations

import secrets

import pytest

from pytake_contracts import DeadLettered, MessageFailed, MessageSent, MessageStatusUpdated, NumberSendingPaused
from pytake_contracts.topics import DEAD_LETTERS, MESSAGES_DELIVERY, NUMBER_ALERTS

from .sender_harness import RESOLVE_S, SenderStack, start_sender_stack, stop_sender_stack
from .waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sender_stack(servers):  # type: ignore[no-untyped-def]
    stack = start_sender_stack(servers.env)
    try:
        stack.start_sender()
        yield stack
    finally:
        stop_sender_stack(stack)


@pytest.fixture(scope="module")
def tenant(sender_stack: SenderStack):  # type: ignore[no-untyped-def]
    return sender_stack.new_tenant()


def contact() -> str:
    return "1555" + "".join(secrets.choice("0123456789") for _ in range(7))


async def outcome(stack: SenderStack, tenant, request, timeout_s: float = 60.0):  # type: ignore[no-untyped-def]
    """The MessageSent or MessageFailed of one request."""
    events = await eventually(lambda: stack.events(MESSAGES_DELIVERY, tenant.organization_id),
                              lambda found: any(_outcome_of(e, request) for e in found), timeout_s=timeout_s)
    return next(e for e in events if _outcome_of(e, request))


def _outcome_of(event, request) -> bool:  # type: ignore[no-untyped-def]
    return isinstance(event, MessageSent | MessageFailed) and event.payload.request_id == request.event_id


async def calls_of(stack: SenderStack, request) -> list[dict]:  # type: ignore[no-untyped-def]
    return await stack.calls(callback=f"pytake:{request.event_id}")


async def test_sent_with_its_wamid_and_joined_to_its_status(sender_stack: SenderStack, tenant) -> None:
    request = await sender_stack.request(tenant, contact())
    sent = await outcome(sender_stack, tenant, request)
    assert isinstance(sent, MessageSent)
    (call,) = await calls_of(sender_stack, request)
    assert sent.payload.wamid == call["response"]["messages"][0]["id"]
    assert call["authorization"] == f"Bearer {tenant.access_token}"  # from the tenant registry
    # Meta's `sent` webhook went fake → gateway → router → sender, and was joined to the request.
    statuses = await eventually(lambda: sender_stack.events(MESSAGES_DELIVERY, tenant.organization_id),
                                lambda found: any(isinstance(e, MessageStatusUpdated)
                                                  and e.payload.request_id == request.event_id for e in found))
    (status,) = [e for e in statuses if isinstance(e, MessageStatusUpdated) and e.payload.request_id == request.event_id]
    assert status.payload.wamid == sent.payload.wamid and status.payload.status == "sent"


@pytest.mark.parametrize("http_status, code", [(429, 130429), (400, 131056), (400, 80007), (400, 4), (500, None),
                                               (503, 131016)])
async def test_throttles_and_server_errors_are_retried(sender_stack: SenderStack, tenant, http_status, code) -> None:
    failure = {"http_status": http_status, "code": code if code is not None else 1, "count": 2,
               "phone_number_id": tenant.phone_number_id}
    if code is None:
        failure["code"] = 2  # Meta's "service temporarily unavailable" shape with a 5xx
    await sender_stack.inject(**failure)
    request = await sender_stack.request(tenant, contact())
    result = await outcome(sender_stack, tenant, request)
    assert isinstance(result, MessageSent)
    calls = await calls_of(sender_stack, request)
    assert [c["status"] for c in calls] == [http_status, http_status, 200]


async def test_closed_window_is_not_retried_and_reports_metas_code(sender_stack: SenderStack, tenant) -> None:
    await sender_stack.inject(http_status=400, code=131047, message="Re-engagement message", count=1,
                              phone_number_id=tenant.phone_number_id)
    request = await sender_stack.request(tenant, contact())
    failed = await outcome(sender_stack, tenant, request)
    assert isinstance(failed, MessageFailed)
    assert failed.payload.error_code == 131047 and failed.payload.attempts == 1
    assert len(await calls_of(sender_stack, request)) == 1


async def test_invalid_parameter_is_dead_lettered_with_the_reason(sender_stack: SenderStack, tenant) -> None:
    await sender_stack.inject(http_status=400, code=100, message="Invalid parameter: to", count=1,
                              phone_number_id=tenant.phone_number_id)
    request = await sender_stack.request(tenant, contact())
    failed = await outcome(sender_stack, tenant, request)
    assert isinstance(failed, MessageFailed) and failed.payload.error_code == 100
    letters = await eventually(lambda: sender_stack.events(DEAD_LETTERS, tenant.organization_id),
                               lambda found: any(str(request.event_id) in e.payload.original for e in found))
    (letter,) = [e for e in letters if str(request.event_id) in e.payload.original]
    assert isinstance(letter, DeadLettered) and "Invalid parameter: to" in letter.payload.error
    assert len(await calls_of(sender_stack, request)) == 1


async def test_spam_limit_pauses_the_number_until_resumed(sender_stack: SenderStack) -> None:
    tenant = sender_stack.new_tenant()  # its number gets paused
    await sender_stack.inject(http_status=400, code=131048, message="Spam rate limit hit", count=1,
                              phone_number_id=tenant.phone_number_id)
    first = await sender_stack.request(tenant, contact())
    failed = await outcome(sender_stack, tenant, first)
    assert isinstance(failed, MessageFailed) and failed.payload.error_code == 131048
    alerts = await eventually(lambda: sender_stack.events(NUMBER_ALERTS, tenant.organization_id), bool)
    assert isinstance(alerts[0], NumberSendingPaused) and alerts[0].payload.error_code == 131048

    second = await sender_stack.request(tenant, contact())
    refused = await outcome(sender_stack, tenant, second)
    assert isinstance(refused, MessageFailed) and refused.payload.error_code == 131048
    assert await calls_of(sender_stack, second) == []  # never sent to Meta

    sender_stack.sender_cli("resume-number", tenant.organization_id, tenant.phone_number_id)
    third = await sender_stack.request(tenant, contact())
    assert isinstance(await outcome(sender_stack, tenant, third), MessageSent)


async def test_unanswered_send_is_resolved_by_its_status_not_resent(sender_stack: SenderStack, tenant) -> None:
    # Meta accepts the message but answers after the sender's 2 s timeout.
    await sender_stack.inject(mode="slow", delay_s=5.0, count=1, phone_number_id=tenant.phone_number_id)
    request = await sender_stack.request(tenant, contact())
    sent = await outcome(sender_stack, tenant, request)
    assert isinstance(sent, MessageSent)
    (call,) = await calls_of(sender_stack, request)
    assert sent.payload.wamid == call["response"]["messages"][0]["id"]  # learnt from the status webhook


async def test_unanswered_send_that_never_arrived_is_sent_again(sender_stack: SenderStack, tenant) -> None:
    # The request is lost on the way: no answer within the timeout, and no status ever comes.
    await sender_stack.inject(mode="lost", delay_s=5.0, count=1, phone_number_id=tenant.phone_number_id)
    request = await sender_stack.request(tenant, contact())
    sent = await outcome(sender_stack, tenant, request, timeout_s=RESOLVE_S + 60)
    assert isinstance(sent, MessageSent)
    calls = await calls_of(sender_stack, request)
    assert [c["status"] for c in calls] == [504, 200]
    assert calls[1]["received_at"] - calls[0]["received_at"] >= RESOLVE_S - 1.0
