"""Exactly once through a SIGKILL, and one number's limit held by two replicas."""

from __future__ import annotations

from collections import Counter

import pytest

from pytake_contracts import MessageSent
from pytake_contracts.topics import MESSAGES_DELIVERY

from .sender_harness import RESOLVE_S, SenderStack, start_sender_stack, stop_sender_stack
from .waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sender_stack(servers):  # type: ignore[no-untyped-def]
    stack = start_sender_stack(servers.env)
    try:
        yield stack
    finally:
        stop_sender_stack(stack)


def contacts(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i:06d}" for i in range(count)]


async def sent_request_ids(stack: SenderStack, tenant) -> set:  # type: ignore[no-untyped-def]
    return {e.payload.request_id for e in await stack.events(MESSAGES_DELIVERY, tenant.organization_id)
            if isinstance(e, MessageSent)}


async def accepted_per_request(stack: SenderStack, tenant) -> Counter:  # type: ignore[no-untyped-def]
    calls = await stack.calls(phone_number_id=tenant.phone_number_id)
    return Counter(c["body"]["biz_opaque_callback_data"] for c in calls if c["status"] == 200)


async def test_sigkill_mid_batch_then_restart_sends_each_request_exactly_once(sender_stack: SenderStack) -> None:
    tenant = sender_stack.new_tenant()
    total = 400
    sender = sender_stack.start_sender()
    requests = await sender_stack.requests(tenant, contacts("1555", total))

    # Kill it while the batch is going out (the number's 80/s keeps it busy for ~5 s).
    await eventually(lambda: sender_stack.throughput(tenant.phone_number_id), lambda t: t["accepted"] >= 100,
                     interval_s=0.02)
    sender.kill()
    before_restart = (await sender_stack.throughput(tenant.phone_number_id))["accepted"]
    assert before_restart < total, "the batch finished before the kill: nothing was tested"

    sender_stack.start_sender()
    wanted = {r.event_id for r in requests}
    await eventually(lambda: sent_request_ids(sender_stack, tenant), lambda ids: wanted <= ids,
                     timeout_s=RESOLVE_S + 120)
    accepted = await accepted_per_request(sender_stack, tenant)
    assert set(accepted) == {f"pytake:{r.event_id}" for r in requests}
    assert max(accepted.values()) == 1, [k for k, n in accepted.items() if n > 1]


async def test_two_replicas_hold_one_numbers_limit_of_20_per_second(sender_stack: SenderStack) -> None:
    tenant = sender_stack.new_tenant()
    sender_stack.sender_cli("set-rate", tenant.organization_id, tenant.phone_number_id, "20")
    for earlier in sender_stack.senders:
        earlier.stop()
    first, second = sender_stack.start_sender(), sender_stack.start_sender()

    async def outbound_assignments() -> list[dict]:
        return [line for line in second.log_lines("partitions_assigned")
                if line.get("consumer", "").endswith(".sender")]

    # The second replica holds its share before the requests go out (else the first may send them all).
    await eventually(outbound_assignments, lambda lines: bool(lines and lines[-1]["partitions"]), timeout_s=60)
    total = 200
    requests = await sender_stack.requests(tenant, contacts("1666", total))
    wanted = {r.event_id for r in requests}
    await eventually(lambda: sent_request_ids(sender_stack, tenant), lambda ids: wanted <= ids, timeout_s=180)

    throughput = await sender_stack.throughput(tenant.phone_number_id)
    assert throughput["accepted"] == total
    assert throughput["max_in_window"] <= 20, throughput
    # Both replicas handled part of it (the topic's partitions are split between them).
    request_ids = {str(r.event_id) for r in requests}
    for replica in (first, second):
        handled = [line for line in replica.log_lines("event_handled") if line.get("event_id") in request_ids]
        assert handled, f"replica on port {replica.port} handled none of the requests"
