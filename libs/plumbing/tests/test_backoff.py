from pytake_plumbing.backoff import Backoff


def test_delays_grow_exponentially_up_to_the_cap_with_full_jitter() -> None:
    backoff = Backoff(base_s=0.5, max_s=4.0)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (10, 4.0), (10_000, 4.0)]:
        delays = [backoff.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # jittered over the whole range, not a fixed value


def test_no_delay_when_the_base_is_zero() -> None:
    assert Backoff(base_s=0.0).delay(5) == 0.0
