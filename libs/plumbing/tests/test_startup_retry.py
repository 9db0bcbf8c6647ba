"""Start-up: hooks retried through an outage (not through a bug); the collector back on after it."""

import asyncio
import gc

import pytest

from pytake_plumbing import service_app
from pytake_plumbing.service_app import tune_garbage_collector, until_available


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    real_sleep = asyncio.sleep

    async def sleep(_: float) -> None:
        await real_sleep(0)

    monkeypatch.setattr(service_app.asyncio, "sleep", sleep)


async def test_a_hook_failing_for_an_outage_is_run_again_until_it_succeeds() -> None:
    calls = []

    async def hook() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("server restarting")

    await until_available(hook)
    assert len(calls) == 3


async def test_a_hook_failing_for_another_reason_stops_startup_at_once() -> None:
    calls = []

    async def hook() -> None:
        calls.append(1)
        raise ValueError("bad configuration")

    with pytest.raises(ValueError):
        await until_available(hook)
    assert len(calls) == 1


async def test_an_outage_longer_than_the_allowance_stops_startup() -> None:
    async def hook() -> None:
        raise TimeoutError("still down")

    with pytest.raises(TimeoutError):
        await until_available(hook, within_s=0.0)


def test_the_cyclic_collector_is_back_on_tuned_once_started() -> None:
    gc.disable()  # as a service's main module does for its start
    try:
        tune_garbage_collector()
        assert gc.isenabled() and gc.get_threshold()[0] == 50_000
    finally:
        gc.unfreeze()
        gc.set_threshold(700, 10, 10)
        gc.enable()
