"""Keys of concurrent callers share flushes; each caller gets its own answers, or the flush's error."""

import asyncio

from pytake_gateway.adapters.db.coalescing import KeyBatcher


class Recorder:
    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.fail_on = fail_on
        self.running = 0
        self.most_running = 0

    async def flush(self, keys: list[str]) -> dict[str, str]:
        self.batches.append(keys)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        await asyncio.sleep(0)  # a round trip: callers arriving now must wait for the next batch
        self.running -= 1
        if self.fail_on in keys:
            raise ConnectionError("database gone")
        return {key: key.upper() for key in keys}


async def test_concurrent_callers_share_a_few_flushes_and_get_their_own_answers() -> None:
    recorder = Recorder()
    batcher = KeyBatcher(recorder.flush, max_in_flight=1)
    answers = await asyncio.gather(*(batcher.submit([f"k{i}", f"j{i}"]) for i in range(100)))
    assert answers == [{f"k{i}": f"K{i}", f"j{i}": f"J{i}"} for i in range(100)]
    assert len(recorder.batches) <= 2 and sum(map(len, recorder.batches)) == 200
    assert recorder.most_running == 1
    assert all(batch == sorted(batch) for batch in recorder.batches)  # one lock order for every statement


async def test_batches_are_split_at_the_size_limit_and_run_side_by_side_up_to_the_limit() -> None:
    recorder = Recorder()
    batcher = KeyBatcher(recorder.flush, max_in_flight=2, max_batch=10)
    await asyncio.gather(*(batcher.submit([f"k{i:03}"]) for i in range(55)))
    assert max(map(len, recorder.batches)) <= 10 and sum(map(len, recorder.batches)) == 55
    assert recorder.most_running == 2


async def test_a_failed_flush_fails_every_caller_in_it_and_the_next_batch_runs() -> None:
    recorder = Recorder(fail_on="bad")
    batcher = KeyBatcher(recorder.flush, max_in_flight=1)
    results = await asyncio.gather(batcher.submit(["bad"]), batcher.submit(["ok"]), return_exceptions=True)
    assert all(isinstance(result, ConnectionError) for result in results)
    assert await batcher.submit(["later"]) == {"later": "LATER"}


async def test_a_key_already_waiting_shares_its_answer_and_is_flushed_once() -> None:
    recorder = Recorder()
    batcher = KeyBatcher(recorder.flush, max_in_flight=1)
    first = asyncio.ensure_future(batcher.submit(["k"]))
    await asyncio.sleep(0)  # first is now waiting for its batch
    assert batcher.is_waiting("k")
    second = await batcher.submit(["k"])
    assert await first == second == {"k": "K"}
    assert recorder.batches == [["k"]]
