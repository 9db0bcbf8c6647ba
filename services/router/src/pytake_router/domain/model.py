"""The tenant registry's domain: organizations own numbers, numbers run chatbots."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID


class Unroutable(StrEnum):
    UNKNOWN_NUMBER = "unknown_number"
    INACTIVE_NUMBER = "inactive_number"
    NO_CHATBOT = "no_chatbot"


@dataclass(frozen=True)
class NumberRoute:
    """What the router knows about a receiving phone_number_id."""

    organization_id: UUID
    number_id: UUID
    active: bool
    chatbot_id: UUID | None
    flow_id: UUID | None


def decide(route: NumberRoute | None) -> NumberRoute | Unroutable:
    if route is None:
        return Unroutable.UNKNOWN_NUMBER
    if not route.active:
        return Unroutable.INACTIVE_NUMBER
    if route.chatbot_id is None or route.flow_id is None:
        return Unroutable.NO_CHATBOT
    return route
