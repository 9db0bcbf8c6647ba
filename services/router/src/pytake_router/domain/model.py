"""The tenant registry's domain: organizations own numbers, numbers run chatbots."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from uuid import UUID


class Unroutable(StrEnum):
    UNKNOWN_NUMBER = "unknown_number"
    INACTIVE_NUMBER = "inactive_number"
    NO_CHATBOT = "no_chatbot"
    # Signed with another Meta app's secret than the one the number is bound to: whoever holds
    # that secret must not reach this number's organization.
    NOT_BOUND_TO_APP = "number_not_bound_to_app"


@dataclass(frozen=True)
class KeywordRoute:
    """An active chatbot on the number that starts when the text equals one of its keywords."""

    keywords: frozenset[str]
    chatbot_id: UUID
    flow_id: UUID


@dataclass(frozen=True)
class NumberRoute:
    """What the router knows about a receiving phone_number_id."""

    organization_id: UUID
    number_id: UUID
    active: bool
    chatbot_id: UUID | None
    flow_id: UUID | None
    keyword_routes: tuple[KeywordRoute, ...] = field(default=())
    meta_app_id: str | None = None

    def for_text(self, text: str | None) -> NumberRoute:
        """This route, pointed at the chatbot whose start keyword the text is, if any."""
        if not text or not self.keyword_routes:
            return self
        wanted = normalize_keyword(text)
        for candidate in self.keyword_routes:
            if wanted in candidate.keywords:
                return replace(self, chatbot_id=candidate.chatbot_id, flow_id=candidate.flow_id)
        return self


def normalize_keyword(text: str) -> str:
    return " ".join(text.split()).casefold()


def decide(route: NumberRoute | None, text: str | None = None, signed_by: str | None = None
           ) -> NumberRoute | Unroutable:
    """`signed_by` is the Meta app whose secret verified the webhook (None from a gateway in demo
    mode, which has one secret of its own and no apps)."""
    if route is None:
        return Unroutable.UNKNOWN_NUMBER
    if signed_by is not None and signed_by != route.meta_app_id:
        return Unroutable.NOT_BOUND_TO_APP
    if not route.active:
        return Unroutable.INACTIVE_NUMBER
    route = route.for_text(text)
    if route.chatbot_id is None or route.flow_id is None:
        return Unroutable.NO_CHATBOT
    return route

