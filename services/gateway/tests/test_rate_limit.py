from pytake_gateway.domain.rate_limit import TokenBucketLimiter


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_each_source_gets_its_burst_then_the_refill_rate() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(rate_per_s=2, burst=3, clock=clock)
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b")  # another source has its own bucket
    clock.now += 0.5  # one token back at 2/s
    assert [limiter.allow("a") for _ in range(2)] == [True, False]


def test_zero_rate_turns_the_limit_off_and_memory_stays_bounded() -> None:
    off = TokenBucketLimiter(rate_per_s=0, burst=1, clock=Clock())
    assert all(off.allow("a") for _ in range(100))
    limiter = TokenBucketLimiter(rate_per_s=1, burst=1, clock=Clock(), max_sources=2)
    for source in ("a", "b", "c"):
        limiter.allow(source)
    assert len(limiter._buckets) == 2  # noqa: SLF001 - the bound is the point of the test
