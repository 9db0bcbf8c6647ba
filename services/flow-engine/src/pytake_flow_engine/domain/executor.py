"""Runs a flow from where a conversation stands to where it must wait or end. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from .flow import MAX_FLOW_ITERATIONS, EndNode, FlowDefinition, MessageNode, QuestionNode, StartNode, render

Status = Literal["active", "waiting", "ended"]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_NUMBER = re.compile(r"^-?\d+(?:[.,]\d+)?$")


class FlowLoopError(RuntimeError):
    """The flow ran MAX_FLOW_ITERATIONS nodes without waiting: it is ended."""


@dataclass
class ConversationState:
    node_id: str
    variables: dict[str, object] = field(default_factory=dict)
    status: Status = "active"
    retries: int = 0


@dataclass(frozen=True)
class Step:
    state: ConversationState
    replies: list[str]
    visited: list[str]


def begin(flow: FlowDefinition) -> ConversationState:
    return ConversationState(node_id=flow.start.id)


def _valid(answer: str, validation: str) -> bool:
    if validation == "number":
        return bool(_NUMBER.match(answer))
    if validation == "email":
        return bool(_EMAIL.match(answer))
    return bool(answer)


def advance(flow: FlowDefinition, state: ConversationState, answer: str | None) -> Step:
    """Apply an inbound answer (if the conversation waits for one) and run until the next wait."""
    state = ConversationState(state.node_id, dict(state.variables), state.status, state.retries)
    replies: list[str] = []
    visited: list[str] = []
    if state.status == "ended":
        return Step(state, replies, visited)
    if state.status == "waiting":
        node = flow.node(state.node_id)
        assert isinstance(node, QuestionNode)
        text = (answer or "").strip()
        if not _valid(text, node.validation):
            state.retries += 1
            if state.retries > node.max_retries:
                state.status = "ended"
                replies.append("Sorry, we could not understand your answer. Write again to start over.")
                return Step(state, replies, visited)
            replies.append(render(node.retry_text or node.text, state.variables))
            return Step(state, replies, visited)
        state.variables[node.variable] = text
        state.retries = 0
        state.status = "active"
        state.node_id = node.next
    for _ in range(MAX_FLOW_ITERATIONS):
        node = flow.node(state.node_id)
        visited.append(node.id)
        if isinstance(node, StartNode):
            state.node_id = node.next
        elif isinstance(node, MessageNode):
            replies.append(render(node.text, state.variables))
            state.node_id = node.next
        elif isinstance(node, QuestionNode):
            replies.append(render(node.text, state.variables))
            state.status = "waiting"
            return Step(state, replies, visited)
        elif isinstance(node, EndNode):
            if node.text:
                replies.append(render(node.text, state.variables))
            state.status = "ended"
            return Step(state, replies, visited)
    raise FlowLoopError(f"more than {MAX_FLOW_ITERATIONS} nodes without waiting")
