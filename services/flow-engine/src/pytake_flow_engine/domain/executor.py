"""Runs a flow from where a conversation stands to where it must wait or end.

No I/O of its own: HTTP calls and loading another flow (jump) go through a `Runtime`
that the caller provides, so the same code serves Kafka, the API and the simulator.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol
from urllib.parse import quote
from uuid import UUID

from pytake_contracts import (
    ListRow,
    ListSection,
    OutboundButtons,
    OutboundList,
    OutboundMessage,
    OutboundTemplate,
    OutboundText,
    ReplyButton,
)

from .expressions import evaluate
from .flow import (
    MAX_FLOW_ITERATIONS,
    ButtonsNode,
    ConditionNode,
    DelayNode,
    EndNode,
    FlowDefinition,
    HandoffNode,
    HttpRequestNode,
    JumpNode,
    ListNode,
    MessageNode,
    QuestionNode,
    SetVariableNode,
    StartNode,
    TemplateNode,
    TemplateRef,
    render,
)

Status = Literal["active", "waiting", "sleeping", "handoff", "ended", "failed"]
GIVE_UP_TEXT = "Sorry, we could not understand your answer. Write again to start over."

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_NUMBER = re.compile(r"^-?\d+(?:[.,]\d+)?$")
_URL_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class FlowLoopError(RuntimeError):
    """The flow ran MAX_FLOW_ITERATIONS nodes without waiting."""


class FlowRuntimeError(RuntimeError):
    """The flow cannot go on (e.g. it jumps to a flow that has no published version)."""


@dataclass(frozen=True)
class LoadedFlow:
    flow_id: UUID
    version: int
    definition: FlowDefinition


@dataclass(frozen=True)
class Inbound:
    text: str | None
    reply_id: str | None = None


@dataclass(frozen=True)
class HttpCall:
    method: str
    url: str
    headers: dict[str, str]
    body: str | None
    timeout_s: float


@dataclass(frozen=True)
class HttpAnswer:
    status: int = 0
    text: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and 200 <= self.status < 300


class Runtime(Protocol):
    async def http(self, call: HttpCall) -> HttpAnswer: ...

    async def load_flow(self, flow_id: UUID) -> LoadedFlow | None: ...


@dataclass
class ConversationState:
    node_id: str
    variables: dict[str, Any] = field(default_factory=dict)
    status: Status = "active"
    retries: int = 0
    wake_at: datetime | None = None

    def copy(self) -> ConversationState:
        return replace(self, variables=dict(self.variables))


@dataclass
class Step:
    flow: LoadedFlow
    state: ConversationState
    messages: list[OutboundMessage] = field(default_factory=list)
    visited: list[str] = field(default_factory=list)
    handed_off: bool = False


def begin(flow: FlowDefinition, variables: dict[str, Any] | None = None) -> ConversationState:
    return ConversationState(node_id=flow.start.id, variables={**flow.variables, **(variables or {})})


def _fit(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def template_message(template: TemplateNode | TemplateRef, variables: dict[str, Any]) -> OutboundTemplate:
    components: list[dict[str, Any]] = []
    if template.parameters:
        components.append({"type": "body", "parameters": [
            {"type": "text", "text": render(parameter, variables) or "-"} for parameter in template.parameters]})
    return OutboundTemplate(name=template.name, language=template.language, components=components)


def _prompt(node: QuestionNode | ButtonsNode | ListNode, variables: dict[str, Any],
            retry: bool = False) -> OutboundMessage:
    body = render(node.retry_text if retry and node.retry_text else node.text, variables)
    if isinstance(node, ButtonsNode):
        return OutboundButtons(
            body=_fit(body, 1024) or "-",
            buttons=[ReplyButton(id=button.id, title=button.title) for button in node.buttons],
            header=_fit(render(node.header, variables), 60) or None if node.header else None,
            footer=_fit(render(node.footer, variables), 60) or None if node.footer else None,
        )
    if isinstance(node, ListNode):
        return OutboundList(
            body=_fit(body, 4096) or "-",
            button=node.button,
            sections=[ListSection(rows=[ListRow(id=row.id, title=row.title, description=row.description)
                                        for row in node.rows])],
            header=_fit(render(node.header, variables), 60) or None if node.header else None,
            footer=_fit(render(node.footer, variables), 60) or None if node.footer else None,
        )
    return OutboundText(body=_fit(body, 4096) or "-")


def _valid_answer(node: QuestionNode, text: str) -> str | None:
    """The value to store, or None when the answer does not pass the node's validation."""
    if not text:
        return None
    if node.validation == "number":
        return text if _NUMBER.match(text) else None
    if node.validation == "email":
        return text if _EMAIL.match(text) else None
    if node.validation == "options":
        for option in node.options or []:
            if option.casefold() == text.casefold():
                return option
        return None
    return text


def _chosen(node: ButtonsNode | ListNode, inbound: Inbound) -> tuple[str, str] | None:
    """(title, next node) of the choice the customer made, by reply id, title or position."""
    text = (inbound.text or "").strip()
    choices = node.choices()
    for choice_id, title, target in choices:
        if inbound.reply_id and inbound.reply_id == choice_id:
            return title, target
    for _, title, target in choices:
        if text and text.casefold() == title.casefold():
            return title, target
    if text.isdigit() and 1 <= int(text) <= len(choices):
        _, title, target = choices[int(text) - 1]
        return title, target
    return None


def render_url(template: str, variables: dict[str, Any]) -> str:
    """Like render, but each substituted value is percent-encoded: data cannot change the URL's shape."""
    return _URL_VARIABLE.sub(lambda m: quote(render("{{" + m.group(1) + "}}", variables), safe=""), template)


def extract(answer: HttpAnswer, path: str) -> Any:
    if path == "$status":
        return answer.status
    if path == "$body":
        return answer.text[:4096]
    try:
        value: Any = json.loads(answer.text)
    except ValueError:
        return None
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    if value is None or isinstance(value, str | int | float | bool):
        return value if not isinstance(value, str) else value[:4096]
    return json.dumps(value)[:4096]


class _Run:
    """One call of the executor: collects messages while walking the graph."""

    def __init__(self, flow: LoadedFlow, state: ConversationState, now: datetime, runtime: Runtime,
                 max_iterations: int) -> None:
        self.step = Step(flow=flow, state=state.copy())
        self.now = now
        self.runtime = runtime
        self.max_iterations = max_iterations

    @property
    def state(self) -> ConversationState:
        return self.step.state

    @property
    def definition(self) -> FlowDefinition:
        return self.step.flow.definition

    def send(self, message: OutboundMessage) -> None:
        self.step.messages.append(message)

    def say(self, text: str | None) -> None:
        if text:
            body = _fit(render(text, self.state.variables), 4096)
            if body:
                self.send(OutboundText(body=body))

    def answer(self, inbound: Inbound) -> bool:
        """Apply the customer's answer to the waiting node; True when the flow goes on."""
        state = self.state
        node = self.definition.node(state.node_id)
        target: str | None = None
        if isinstance(node, QuestionNode):
            value = _valid_answer(node, (inbound.text or "").strip())
            if value is not None:
                state.variables[node.variable] = value
                target = node.next
        elif isinstance(node, ButtonsNode | ListNode):
            chosen = _chosen(node, inbound)
            if chosen is not None:
                title, target = chosen
                if node.variable:
                    state.variables[node.variable] = title
        else:
            raise FlowRuntimeError(f"conversation waits on node {node.id!r} of type {node.type}")
        if target is not None:
            state.retries = 0
            state.status = "active"
            state.node_id = target
            return True
        assert isinstance(node, QuestionNode | ButtonsNode | ListNode)
        state.retries += 1
        if state.retries > node.max_retries:
            state.retries = 0
            if node.on_fail:
                state.status = "active"
                state.node_id = node.on_fail
                return True
            state.status = "ended"
            self.send(OutboundText(body=GIVE_UP_TEXT))
            return False
        self.send(_prompt(node, state.variables, retry=True))
        return False

    async def run(self) -> Step:
        state = self.state
        for _ in range(self.max_iterations):
            node = self.definition.node(state.node_id)
            self.step.visited.append(node.id)
            if isinstance(node, StartNode):
                state.node_id = node.next
            elif isinstance(node, MessageNode):
                self.say(node.text)
                state.node_id = node.next
            elif isinstance(node, QuestionNode | ButtonsNode | ListNode):
                self.send(_prompt(node, state.variables))
                state.status = "waiting"
                return self.step
            elif isinstance(node, ConditionNode):
                state.node_id = next((branch.next for branch in node.branches
                                      if evaluate(branch.when, state.variables)), node.otherwise)
            elif isinstance(node, SetVariableNode):
                state.variables[node.variable] = render(node.value, state.variables)
                state.node_id = node.next
            elif isinstance(node, HttpRequestNode):
                state.node_id = await self.http(node)
            elif isinstance(node, HandoffNode):
                self.say(node.text)
                state.status = "handoff"
                self.step.handed_off = True
                return self.step
            elif isinstance(node, JumpNode):
                target = await self.runtime.load_flow(node.flow_id)
                if target is None:
                    raise FlowRuntimeError(f"jump to flow {node.flow_id} which has no published version")
                self.step.flow = target
                state.node_id = target.definition.start.id
                for name, value in target.definition.variables.items():
                    state.variables.setdefault(name, value)
            elif isinstance(node, DelayNode):
                state.status = "sleeping"
                state.wake_at = self.now + timedelta(seconds=node.seconds)
                return self.step
            elif isinstance(node, TemplateNode):
                self.send(template_message(node, state.variables))
                state.node_id = node.next
            elif isinstance(node, EndNode):
                self.say(node.text)
                state.status = "ended"
                return self.step
        raise FlowLoopError(f"more than {self.max_iterations} nodes without waiting")

    async def http(self, node: HttpRequestNode) -> str:
        variables = self.state.variables
        call = HttpCall(
            method=node.method,
            url=render_url(node.url, variables),
            headers={name: render(value, variables) for name, value in node.headers.items()},
            body=render(node.body, variables) if node.body is not None else None,
            timeout_s=node.timeout_ms / 1000,
        )
        answer = await self.runtime.http(call)
        if answer.error is None:
            for name, path in node.save.items():
                variables[name] = extract(answer, path)
        if answer.ok:
            return node.next
        return node.on_error or node.next


async def advance(flow: LoadedFlow, state: ConversationState, inbound: Inbound | None, now: datetime,
                  runtime: Runtime, max_iterations: int = MAX_FLOW_ITERATIONS) -> Step:
    """Apply an inbound message (if the conversation waits for one) and run until the next wait.

    A sleeping, handed-off, parked or ended conversation is left as it is.
    """
    run = _Run(flow, state, now, runtime, max_iterations)
    if inbound is not None and inbound.text is not None:
        run.state.variables["last_message"] = inbound.text
    status = run.state.status
    if status in ("sleeping", "handoff", "failed", "ended"):
        return run.step
    if status == "waiting":
        if inbound is None or not run.answer(inbound):
            return run.step
    return await run.run()


async def resume(flow: LoadedFlow, state: ConversationState, now: datetime, runtime: Runtime,
                 max_iterations: int = MAX_FLOW_ITERATIONS) -> Step:
    """Wake a due delay, or release a handoff: continue after the node the conversation stopped on."""
    run = _Run(flow, state, now, runtime, max_iterations)
    node = run.definition.node(run.state.node_id)
    if run.state.status == "sleeping" and isinstance(node, DelayNode):
        if run.state.wake_at is not None and run.state.wake_at > now:
            return run.step
    elif not (run.state.status == "handoff" and isinstance(node, HandoffNode)):
        return run.step
    run.state.status = "active"
    run.state.wake_at = None
    run.state.node_id = node.next
    return await run.run()
