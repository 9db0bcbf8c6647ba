"""A flow is a graph of typed nodes; each node names the node that follows it."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_FLOW_ITERATIONS = 100
CONVERSATION_SESSION_TTL_HOURS = 24


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, max_length=64)


class StartNode(_Node):
    type: Literal["start"]
    next: str


class MessageNode(_Node):
    type: Literal["message"]
    text: str = Field(min_length=1, max_length=4096)
    next: str


class QuestionNode(_Node):
    type: Literal["question"]
    text: str = Field(min_length=1, max_length=4096)
    variable: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    validation: Literal["any", "number", "email"] = "any"
    retry_text: str | None = None
    max_retries: int = Field(default=2, ge=0, le=10)
    next: str


class EndNode(_Node):
    type: Literal["end"]
    text: str | None = None


Node = Annotated[StartNode | MessageNode | QuestionNode | EndNode, Field(discriminator="type")]


class FlowDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    nodes: list[Node] = Field(min_length=2)

    @model_validator(mode="after")
    def _graph_is_sound(self) -> FlowDefinition:
        errors: list[str] = []
        ids = [node.id for node in self.nodes]
        if len(set(ids)) != len(ids):
            errors.append("node ids must be unique")
        starts = [node for node in self.nodes if node.type == "start"]
        if len(starts) != 1:
            errors.append(f"a flow needs exactly one start node, found {len(starts)}")
        known = set(ids)
        for node in self.nodes:
            target = getattr(node, "next", None)
            if target is not None and target not in known:
                errors.append(f"node {node.id!r} points to missing node {target!r}")
        if errors:
            raise ValueError("; ".join(errors))
        return self

    @property
    def start(self) -> StartNode:
        return next(node for node in self.nodes if isinstance(node, StartNode))

    def node(self, node_id: str) -> StartNode | MessageNode | QuestionNode | EndNode:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)


_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def render(template: str, variables: dict[str, object]) -> str:
    """`{{name}}` → the variable's value; unknown variables render as empty text."""
    return _VARIABLE.sub(lambda m: str(variables.get(m.group(1), "")), template)
