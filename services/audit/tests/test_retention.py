from __future__ import annotations

from pytake_audit.service.record import RetentionPolicy


class Store:
    def __init__(self, days: dict[str, int]) -> None:
        self.days = days
        self.loads = 0

    async def all(self) -> dict[str, int]:
        self.loads += 1
        return dict(self.days)


async def test_organizations_without_their_own_retention_get_the_default() -> None:
    policy = RetentionPolicy(Store({"org-a": 7}), default_days=365)
    assert await policy.days_for("org-a") == 7
    assert await policy.days_for("org-b") == 365
    assert await policy.days_for(None) == 365


async def test_retention_is_cached_and_refreshed_after_the_interval() -> None:
    now = [0.0]
    store = Store({"org-a": 7})
    policy = RetentionPolicy(store, default_days=365, refresh_s=60, clock=lambda: now[0])
    await policy.days_for("org-a")
    store.days["org-a"] = 30
    assert await policy.days_for("org-a") == 7 and store.loads == 1
    now[0] = 61.0
    assert await policy.days_for("org-a") == 30 and store.loads == 2


async def test_a_change_made_here_is_seen_at_once() -> None:
    policy = RetentionPolicy(Store({}), default_days=365)
    await policy.days_for("org-a")
    policy.changed("org-a", 14)
    assert await policy.days_for("org-a") == 14
