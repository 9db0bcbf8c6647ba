"""A flow is a graph of typed nodes; each node names the node(s) that may follow it.

Node models check each node's own fields (Meta's limits included); `graph_problems`
checks the graph as a whole. Publishing reports every problem at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, model_validator

from .expressions import ExpressionError, parse, variables_in

MAX_FLOW_ITERATIONS = 100
FLOW_EXECUTION_TIMEOUT_MS = 30000
CONVERSATION_SESSION_TTL_HOURS = 24
CUSTOMER_SERVICE_WINDOW_HOURS = 24
# A flow's size, draft or published. A hand-built chatbot flow has tens of nodes; 500 leaves ample
# room, and a bigger design splits into flows joined by jump nodes. 256 KiB of JSON is about 512
# bytes a node at 500 nodes, where an ordinary node takes 60 to a few hundred (long texts take more,
# a few of them fit). Every conversation step loads its flow version: its size is paid per message.
MAX_FLOW_NODES = 500
MAX_FLOW_DOCUMENT_BYTES = 256 * 1024

VARIABLE_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
# Set by the engine for every conversation, so flows may use them without assigning them.
BUILTIN_VARIABLES = frozenset({"contact_name", "contact_id", "last_message"})


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, max_length=64)

    def targets(self) -> list[str]:
        """Every node this one may continue to."""
        target = getattr(self, "next", None)
        return [target] if target else []

    def texts(self) -> list[str]:
        """Every text that is rendered with {{variable}} substitution."""
        return []

    def assigns(self) -> set[str]:
        return set()


class StartNode(_Node):
    type: Literal["start"]
    next: str


class MessageNode(_Node):
    type: Literal["message"]
    text: str = Field(min_length=1, max_length=4096)
    next: str

    def texts(self) -> list[str]:
        return [self.text]


class _Asks(_Node):
    """A node that waits for the customer's answer, re-prompting up to `max_retries` times."""

    variable: str | None = Field(default=None, pattern=VARIABLE_NAME)
    retry_text: str | None = Field(default=None, max_length=1024)
    max_retries: int = Field(default=2, ge=0, le=10)
    on_fail: str | None = Field(default=None, description="Node after too many invalid answers; else the "
                                                           "conversation ends with an apology.")

    def targets(self) -> list[str]:
        return [*super().targets(), *([self.on_fail] if self.on_fail else [])]

    def texts(self) -> list[str]:
        return [self.retry_text] if self.retry_text else []

    def assigns(self) -> set[str]:
        return {self.variable} if self.variable else set()


class QuestionNode(_Asks):
    type: Literal["question"]
    text: str = Field(min_length=1, max_length=4096)
    variable: str = Field(pattern=VARIABLE_NAME)
    validation: Literal["any", "number", "email", "options"] = "any"
    options: list[str] | None = Field(default=None, min_length=1, max_length=50)
    next: str

    @model_validator(mode="after")
    def _options_when_needed(self) -> QuestionNode:
        if self.validation == "options" and not self.options:
            raise ValueError("validation 'options' needs a list of options")
        return self

    def texts(self) -> list[str]:
        return [self.text, *super().texts()]


class Button(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, max_length=256)
    title: str = Field(min_length=1, max_length=20, description="Meta: at most 20 characters.")
    next: str


class ButtonsNode(_Asks):
    """Reply buttons; the chosen button decides the next node."""

    type: Literal["buttons"]
    text: str = Field(min_length=1, max_length=1024)
    buttons: list[Button] = Field(min_length=1, max_length=3, description="Meta: at most 3 reply buttons.")
    header: str | None = Field(default=None, max_length=60)
    footer: str | None = Field(default=None, max_length=60)

    def targets(self) -> list[str]:
        return [*(button.next for button in self.buttons), *super().targets()]

    def texts(self) -> list[str]:
        return [self.text, *([self.header] if self.header else []), *([self.footer] if self.footer else []),
                *super().texts()]

    def choices(self) -> list[tuple[str, str, str]]:
        return [(button.id, button.title, button.next) for button in self.buttons]


class ListRowChoice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, max_length=200)
    title: str = Field(min_length=1, max_length=24)
    description: str | None = Field(default=None, max_length=72)
    next: str


class ListNode(_Asks):
    """A list message (≤ 10 rows); the chosen row decides the next node."""

    type: Literal["list"]
    text: str = Field(min_length=1, max_length=4096)
    button: str = Field(min_length=1, max_length=20)
    rows: list[ListRowChoice] = Field(min_length=1, max_length=10, description="Meta: at most 10 rows.")
    header: str | None = Field(default=None, max_length=60)
    footer: str | None = Field(default=None, max_length=60)

    def targets(self) -> list[str]:
        return [*(row.next for row in self.rows), *super().targets()]

    def texts(self) -> list[str]:
        return [self.text, *([self.header] if self.header else []), *([self.footer] if self.footer else []),
                *super().texts()]

    def choices(self) -> list[tuple[str, str, str]]:
        return [(row.id, row.title, row.next) for row in self.rows]


class Branch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    when: str = Field(min_length=1, max_length=500)
    next: str


class ConditionNode(_Node):
    """The first branch whose expression holds wins; otherwise `else`."""

    type: Literal["condition"]
    branches: list[Branch] = Field(min_length=1, max_length=20)
    otherwise: str = Field(alias="else")
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)

    def targets(self) -> list[str]:
        return [*(branch.next for branch in self.branches), self.otherwise]


class SetVariableNode(_Node):
    type: Literal["set_variable"]
    variable: str = Field(pattern=VARIABLE_NAME)
    value: str = Field(max_length=4096, description="Text with {{variable}} substitution.")
    next: str

    def texts(self) -> list[str]:
        return [self.value]

    def assigns(self) -> set[str]:
        return {self.variable}


class HttpRequestNode(_Node):
    """Calls an HTTP API; `save` maps response parts into variables.

    `save` values: "$status" (status code), "$body" (text), or a dotted path into the
    JSON answer ("data.items.0.name"). A failure (refused address, timeout, non-2xx)
    continues at `on_error` when given, else at `next`.
    """

    type: Literal["http_request"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: str = Field(min_length=1, max_length=2048)
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = Field(default=None, max_length=65536)
    timeout_ms: int = Field(default=5000, ge=100, le=10000)
    save: dict[str, str] = Field(default_factory=dict)
    next: str
    on_error: str | None = None

    @model_validator(mode="after")
    def _sound(self) -> HttpRequestNode:
        if not (self.url.startswith(("http://", "https://")) or self.url.startswith("{{")):
            raise ValueError("url must start with http:// or https://")
        for name in self.save:
            if not re.match(VARIABLE_NAME, name):
                raise ValueError(f"save: {name!r} is not a variable name")
        return self

    def targets(self) -> list[str]:
        return [self.next, *([self.on_error] if self.on_error else [])]

    def texts(self) -> list[str]:
        return [self.url, *self.headers.values(), *([self.body] if self.body else [])]

    def assigns(self) -> set[str]:
        return set(self.save)


class HandoffNode(_Node):
    """Pauses the bot for a person; the conversation continues at `next` when released."""

    type: Literal["handoff"]
    text: str | None = Field(default=None, max_length=4096)
    next: str

    def texts(self) -> list[str]:
        return [self.text] if self.text else []


class JumpNode(_Node):
    """Continues in another flow (its latest published version), keeping the variables."""

    type: Literal["jump"]
    flow_id: UUID


class DelayNode(_Node):
    type: Literal["delay"]
    seconds: int = Field(ge=1, le=7 * 24 * 3600)
    next: str


class TemplateNode(_Node):
    """An approved template message: the only kind Meta delivers outside the 24 h window."""

    type: Literal["template"]
    name: str = Field(min_length=1, max_length=512)
    language: str = Field(default="en_US", min_length=2, max_length=16)
    parameters: list[str] = Field(default_factory=list, max_length=20, description="Body parameters, in order.")
    next: str

    def texts(self) -> list[str]:
        return list(self.parameters)


class EndNode(_Node):
    type: Literal["end"]
    text: str | None = Field(default=None, max_length=4096)

    def texts(self) -> list[str]:
        return [self.text] if self.text else []


AnyNode = (StartNode | MessageNode | QuestionNode | ButtonsNode | ListNode | ConditionNode | SetVariableNode
           | HttpRequestNode | HandoffNode | JumpNode | DelayNode | TemplateNode | EndNode)
Node = Annotated[AnyNode, Field(discriminator="type")]


class TemplateRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, max_length=512)
    language: str = Field(default="en_US", min_length=2, max_length=16)
    parameters: list[str] = Field(default_factory=list, max_length=20)


class FlowSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    fallback_template: TemplateRef | None = Field(
        default=None, description="Sent instead of free-form messages when the 24-hour window is closed.")
    restart_keywords: list[str] = Field(default_factory=list, max_length=10,
                                        description="A message equal to one of these restarts the flow.")
    session_ttl_hours: int | None = Field(default=None, ge=1, le=24 * 30)


class FlowDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    nodes: list[Node] = Field(min_length=2, max_length=MAX_FLOW_NODES)
    variables: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Declared variables and their initial values.")
    settings: FlowSettings | None = None
    _index: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _graph_is_sound(self, info: ValidationInfo) -> FlowDefinition:
        if info.context and info.context.get("skip_graph"):
            return self
        problems = graph_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def start(self) -> StartNode:
        return next(node for node in self.nodes if isinstance(node, StartNode))

    def node(self, node_id: str) -> AnyNode:
        if not self._index:
            self._index.update({node.id: node for node in self.nodes})
        return self._index[node_id]

    @property
    def restart_keywords(self) -> set[str]:
        return {word.strip().casefold() for word in (self.settings.restart_keywords if self.settings else [])}

    @property
    def fallback_template(self) -> TemplateRef | None:
        return self.settings.fallback_template if self.settings else None


class FlowDraft(BaseModel):
    """A flow being edited: any JSON object, checked in full only when it is published; what is
    bounded here is its size (the request body's bytes are bounded by the API)."""

    model_config = ConfigDict(extra="allow")
    nodes: list[dict[str, Any]] | None = Field(
        default=None, max_length=MAX_FLOW_NODES, description=f"At most {MAX_FLOW_NODES} nodes.")

    def document(self) -> dict[str, Any]:
        """The draft as it was sent."""
        return self.model_dump(mode="json", exclude_unset=True)


_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def template_variables(text: str) -> set[str]:
    return set(_VARIABLE.findall(text))


def render(template: str, variables: dict[str, object]) -> str:
    """`{{name}}` → the variable's value; unknown variables render as empty text."""
    return _VARIABLE.sub(lambda m: _text(variables.get(m.group(1), "")), template)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _walk(flow: FlowDefinition, start: str) -> Iterator[str]:
    seen: set[str] = set()
    stack = [start]
    known = {node.id for node in flow.nodes}
    while stack:
        current = stack.pop()
        if current in seen or current not in known:
            continue
        seen.add(current)
        yield current
        stack.extend(flow.node(current).targets())


def graph_problems(flow: FlowDefinition) -> list[str]:
    """Every problem of the graph as a whole, each as one sentence."""
    problems: list[str] = []
    ids = [node.id for node in flow.nodes]
    duplicates = sorted({node_id for node_id in ids if ids.count(node_id) > 1})
    if duplicates:
        problems.append(f"node ids must be unique: {', '.join(duplicates)}")
    starts = [node for node in flow.nodes if node.type == "start"]
    if len(starts) != 1:
        problems.append(f"a flow needs exactly one start node, found {len(starts)}")
    known = set(ids)
    for node in flow.nodes:
        for target in node.targets():
            if target not in known:
                problems.append(f"node {node.id!r} points to missing node {target!r}")
        if isinstance(node, ButtonsNode | ListNode):
            choice_ids = [choice[0] for choice in node.choices()]
            if len(set(choice_ids)) != len(choice_ids):
                problems.append(f"node {node.id!r} has duplicate choice ids")
    if len(starts) == 1 and not duplicates:
        reachable = set(_walk(flow, starts[0].id))
        for node in flow.nodes:
            if node.id not in reachable:
                problems.append(f"node {node.id!r} is not reachable from the start")
    problems.extend(_variable_problems(flow))
    return problems


def _variable_problems(flow: FlowDefinition) -> list[str]:
    problems: list[str] = []
    assigned = set(BUILTIN_VARIABLES) | set(flow.variables)
    for node in flow.nodes:
        assigned |= node.assigns()
    for name in flow.variables:
        if not re.match(VARIABLE_NAME, name):
            problems.append(f"variables: {name!r} is not a variable name")
    for node in flow.nodes:
        for name in sorted(node.assigns() & BUILTIN_VARIABLES):
            problems.append(f"node {node.id!r} assigns {name!r}, which the engine sets itself")

    def check(owner: str, names: set[str]) -> None:
        for name in sorted(names - assigned):
            problems.append(f"{owner} uses unknown variable {name!r}")

    for node in flow.nodes:
        for text in node.texts():
            check(f"node {node.id!r}", template_variables(text))
        if isinstance(node, ConditionNode):
            for index, branch in enumerate(node.branches):
                try:
                    check(f"node {node.id!r}", variables_in(parse(branch.when)))
                except ExpressionError as exc:
                    problems.append(f"node {node.id!r} branch {index}: {exc}")
    fallback = flow.fallback_template
    if fallback:
        for parameter in fallback.parameters:
            check("settings.fallback_template", template_variables(parameter))
    return problems


def check_definition(document: Any) -> tuple[FlowDefinition | None, list[dict[str, Any]]]:
    """Validate a flow document; returns the flow or every error found (field errors, then graph errors)."""
    try:
        flow = FlowDefinition.model_validate(document, context={"skip_graph": True})
    except ValidationError as exc:
        return None, [{"loc": [str(part) for part in error["loc"]], "msg": error["msg"]} for error in exc.errors()]
    problems = graph_problems(flow)
    if problems:
        return None, [{"loc": ["nodes"], "msg": problem} for problem in problems]
    return flow, []


def jump_targets(flow: FlowDefinition) -> set[UUID]:
    return {node.flow_id for node in flow.nodes if isinstance(node, JumpNode)}
