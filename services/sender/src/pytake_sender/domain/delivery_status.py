"""Meta's statuses arrive out of order; they are applied monotonically."""

from __future__ import annotations

RANKS = {"sent": 1, "delivered": 2, "read": 3, "failed": 4}


def rank(status: str | None) -> int:
    return RANKS.get(status or "", 0)


def moves_forward(current: str | None, new: str) -> bool:
    """`failed` is terminal; otherwise only a later status replaces an earlier one."""
    if current == "failed":
        return False
    return rank(new) > rank(current)


def apply_in_order(current: str | None, statuses: list[str]) -> tuple[str | None, list[bool]]:
    """Statuses of one message applied one after another: the latest status, and whether each moved it."""
    moved = []
    for status in statuses:
        moved.append(moves_forward(current, status))
        if moved[-1]:
            current = status
    return current, moved
