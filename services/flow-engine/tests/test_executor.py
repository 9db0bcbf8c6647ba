from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from pytake_flow_engine.domain.executor import (
    GIVE_UP_TEXT,
    ConversationState,
    FlowLoopError,
    FlowRuntimeError,
    HttpAnswer,
    HttpCall,
    Inbound,
    LoadedFlow,
    advance,
    begin,
    resume,
)
from pytake_flow_engine.domain.flow import MAX_FLOW_ITERATIONS, FlowDefinition, render

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class FakeRuntime:
    def __init__(self, answers: dict[str, HttpAnswer] | None = None,
                 flows: dict[UUID, LoadedFlow] | None = None) -> None:
        self.answers = answers or {}
        self.flows = flows or {}
        self.calls: list[HttpCall] = []

    async def http(self, call: HttpCall) -> HttpAnswer:
        self.calls.append(call)
        return self.answers.get(call.url, HttpAnswer(error="no route"))

    async def load_flow(self, flow_id: UUID) -> LoadedFlow | None:
        return self.flows.get(flow_id)


def loaded(nodes: list[dict], **extra) -> LoadedFlow:
    return LoadedFlow(uuid4(), 1, FlowDefinition.model_validate({"nodes": nodes, **extra}))


async def start(flow: LoadedFlow, runtime: FakeRuntime | None = None, text: str = "Hi"):
    return await advance(flow, begin(flow.definition), Inbound(text), NOW, runtime or FakeRuntime())


async def reply(flow: LoadedFlow, state: ConversationState, text: str | None, reply_id: str | None = None,
                runtime: FakeRuntime | None = None):
    return await advance(flow, state, Inbound(text, reply_id), NOW, runtime or FakeRuntime())


def bodies(step) -> list[str]:
    return [getattr(m, "body", None) or getattr(m, "name", None) for m in step.messages]


ASK_NAME = loaded([
    {"id": "s", "type": "start", "next": "q"},
    {"id": "q", "type": "question", "variable": "name", "text": "Your name?", "next": "m"},
    {"id": "m", "type": "message", "text": "Hello {{ name }}!", "next": "e"},
    {"id": "e", "type": "end", "text": "Bye {{name}}"},
])


async def test_question_waits_then_answer_is_substituted() -> None:
    first = await start(ASK_NAME)
    assert bodies(first) == ["Your name?"]
    assert first.state.status == "waiting" and first.state.node_id == "q"
    second = await reply(ASK_NAME, first.state, "  Ada ")
    assert bodies(second) == ["Hello Ada!", "Bye Ada"]
    assert second.state.status == "ended"
    assert second.state.variables["name"] == "Ada"
    assert second.visited == ["m", "e"]


async def test_advance_does_not_mutate_the_given_state() -> None:
    state = (await start(ASK_NAME)).state
    await reply(ASK_NAME, state, "Ada")
    assert "name" not in state.variables and state.status == "waiting"


async def test_invalid_answer_reprompts_then_gives_up() -> None:
    flow = loaded([
        {"id": "s", "type": "start", "next": "q"},
        {"id": "q", "type": "question", "variable": "age", "text": "Age?", "validation": "number",
         "retry_text": "A number, please.", "max_retries": 1, "next": "e"},
        {"id": "e", "type": "end"},
    ])
    waiting = (await start(flow)).state
    retry = await reply(flow, waiting, "old")
    assert bodies(retry) == ["A number, please."] and retry.state.status == "waiting"
    gave_up = await reply(flow, retry.state, "very old")
    assert gave_up.state.status == "ended" and bodies(gave_up) == [GIVE_UP_TEXT]
    accepted = await reply(flow, waiting, "42")
    assert accepted.state.variables["age"] == "42" and accepted.state.status == "ended"


async def test_too_many_invalid_answers_go_to_on_fail_when_given() -> None:
    flow = loaded([
        {"id": "s", "type": "start", "next": "q"},
        {"id": "q", "type": "question", "variable": "mail", "text": "Mail?", "validation": "email",
         "max_retries": 0, "on_fail": "human", "next": "e"},
        {"id": "human", "type": "message", "text": "Let me get someone.", "next": "e"},
        {"id": "e", "type": "end"},
    ])
    step = await reply(flow, (await start(flow)).state, "nope")
    assert bodies(step) == ["Let me get someone."] and step.state.status == "ended"


async def test_email_and_options_validation() -> None:
    flow = loaded([
        {"id": "s", "type": "start", "next": "q"},
        {"id": "q", "type": "question", "variable": "mail", "text": "Mail?", "validation": "email", "next": "o"},
        {"id": "o", "type": "question", "variable": "size", "text": "Size?", "validation": "options",
         "options": ["Small", "Large"], "next": "e"},
        {"id": "e", "type": "end"},
    ])
    waiting = (await start(flow)).state
    assert (await reply(flow, waiting, "not-an-email")).state.node_id == "q"
    asked_size = await reply(flow, waiting, "ada@example.org")
    assert asked_size.state.variables["mail"] == "ada@example.org" and asked_size.state.node_id == "o"
    assert (await reply(flow, asked_size.state, "medium")).state.node_id == "o"
    done = await reply(flow, asked_size.state, "large")
    assert done.state.variables["size"] == "Large" and done.state.status == "ended"


BUTTONS = loaded([
    {"id": "s", "type": "start", "next": "b"},
    {"id": "b", "type": "buttons", "text": "Hi {{contact_name}}, what now?", "variable": "choice",
     "buttons": [{"id": "buy", "title": "Buy", "next": "buy"}, {"id": "help", "title": "Help", "next": "help"}],
     "footer": "PyTake"},
    {"id": "buy", "type": "message", "text": "Let's buy.", "next": "e"},
    {"id": "help", "type": "message", "text": "Helping.", "next": "e"},
    {"id": "e", "type": "end"},
])


async def test_buttons_branch_on_reply_id_title_or_position() -> None:
    first = await advance(BUTTONS, begin(BUTTONS.definition, {"contact_name": "Ada"}), Inbound("hi"), NOW,
                          FakeRuntime())
    (prompt,) = first.messages
    assert prompt.type == "buttons" and prompt.body == "Hi Ada, what now?" and prompt.footer == "PyTake"
    assert [(b.id, b.title) for b in prompt.buttons] == [("buy", "Buy"), ("help", "Help")]
    assert bodies(await reply(BUTTONS, first.state, "Help", reply_id="buy")) == ["Let's buy."]
    by_title = await reply(BUTTONS, first.state, "help")
    assert bodies(by_title) == ["Helping."] and by_title.state.variables["choice"] == "Help"
    assert bodies(await reply(BUTTONS, first.state, "2")) == ["Helping."]
    again = await reply(BUTTONS, first.state, "what?")
    assert again.messages[0].type == "buttons" and again.state.retries == 1


async def test_list_node_sends_rows_and_branches() -> None:
    flow = loaded([
        {"id": "s", "type": "start", "next": "l"},
        {"id": "l", "type": "list", "text": "Pick a store", "button": "Stores", "variable": "store",
         "rows": [{"id": f"r{i}", "title": f"Store {i}", "next": "e"} for i in range(10)]},
        {"id": "e", "type": "end", "text": "{{store}} it is"},
    ])
    first = await start(flow)
    (prompt,) = first.messages
    assert prompt.type == "list" and sum(len(s.rows) for s in prompt.sections) == 10
    done = await reply(flow, first.state, None, reply_id="r3")
    assert bodies(done) == ["Store 3 it is"]


async def test_condition_branches_and_else() -> None:
    flow = loaded([
        {"id": "s", "type": "start", "next": "q"},
        {"id": "q", "type": "question", "variable": "age", "text": "Age?", "validation": "number", "next": "c"},
        {"id": "c", "type": "condition", "branches": [
            {"when": "age >= 18 and not (age > 120)", "next": "adult"},
            {"when": "age < 0", "next": "weird"}], "else": "minor"},
        {"id": "adult", "type": "end", "text": "adult"},
        {"id": "weird", "type": "end", "text": "weird"},
        {"id": "minor", "type": "end", "text": "minor"},
    ])
    waiting = (await start(flow)).state
    assert bodies(await reply(flow, waiting, "30")) == ["adult"]
    assert bodies(await reply(flow, waiting, "12")) == ["minor"]
    assert bodies(await reply(flow, waiting, "200")) == ["minor"]


async def test_set_variable_renders_and_jump_keeps_variables() -> None:
    target = loaded([
        {"id": "s2", "type": "start", "next": "m2"},
        {"id": "m2", "type": "message", "text": "Welcome to billing, {{who}} ({{tier}})", "next": "e2"},
        {"id": "e2", "type": "end"},
    ], variables={"who": "", "tier": "basic"})
    flow = loaded([
        {"id": "s", "type": "start", "next": "v"},
        {"id": "v", "type": "set_variable", "variable": "who", "value": "{{contact_name}}!", "next": "j"},
        {"id": "j", "type": "jump", "flow_id": str(target.flow_id)},
    ])
    runtime = FakeRuntime(flows={target.flow_id: target})
    step = await advance(flow, begin(flow.definition, {"contact_name": "Bo"}), Inbound("hi"), NOW, runtime)
    assert bodies(step) == ["Welcome to billing, Bo! (basic)"]
    assert step.flow == target and step.state.status == "ended"
    with pytest.raises(FlowRuntimeError):
        await start(flow, FakeRuntime())


async def test_http_request_maps_the_answer_and_takes_on_error() -> None:
    flow = loaded([
        {"id": "s", "type": "start", "next": "q"},
        {"id": "q", "type": "question", "variable": "code", "text": "Order?", "next": "h"},
        {"id": "h", "type": "http_request", "method": "POST", "url": "https://api.example.com/o/{{code}}",
         "headers": {"X-Code": "{{code}}"}, "body": "{\"c\": \"{{code}}\"}", "timeout_ms": 2000,
         "save": {"state": "order.state", "http_status": "$status", "first": "items.0"},
         "next": "ok", "on_error": "bad"},
        {"id": "ok", "type": "end", "text": "{{state}} {{http_status}} {{first}}"},
        {"id": "bad", "type": "end", "text": "unavailable ({{http_status}})"},
    ])
    url = "https://api.example.com/o/a%2Fb%3F"
    runtime = FakeRuntime({url: HttpAnswer(200, '{"order": {"state": "shipped"}, "items": ["x", "y"]}')})
    waiting = (await start(flow)).state
    step = await reply(flow, waiting, "a/b?", runtime=runtime)
    assert bodies(step) == ["shipped 200 x"]
    (call,) = runtime.calls
    assert call.method == "POST" and call.headers == {"X-Code": "a/b?"} and call.timeout_s == 2.0
    runtime = FakeRuntime({url: HttpAnswer(503, "down")})
    assert bodies(await reply(flow, waiting, "a/b?", runtime=runtime)) == ["unavailable (503)"]
    assert bodies(await reply(flow, waiting, "zzz", runtime=FakeRuntime())) == ["unavailable ()"]


async def test_handoff_pauses_until_released() -> None:
    flow = loaded([
        {"id": "s", "type": "start", "next": "h"},
        {"id": "h", "type": "handoff", "text": "A person will answer.", "next": "m"},
        {"id": "m", "type": "message", "text": "The bot is back.", "next": "e"},
        {"id": "e", "type": "end"},
    ])
    first = await start(flow)
    assert bodies(first) == ["A person will answer."] and first.handed_off and first.state.status == "handoff"
    silent = await reply(flow, first.state, "hello?")
    assert silent.messages == [] and silent.state.status == "handoff"
    released = await resume(flow, first.state, NOW, FakeRuntime())
    assert bodies(released) == ["The bot is back."] and released.state.status == "ended"


async def test_delay_sleeps_until_woken() -> None:
    flow = loaded([
        {"id": "s", "type": "start", "next": "m"},
        {"id": "m", "type": "message", "text": "Wait a minute.", "next": "d"},
        {"id": "d", "type": "delay", "seconds": 60, "next": "t"},
        {"id": "t", "type": "template", "name": "follow_up", "language": "pt_BR", "parameters": ["{{contact_name}}"],
         "next": "e"},
        {"id": "e", "type": "end"},
    ])
    first = await advance(flow, begin(flow.definition, {"contact_name": "Cy"}), Inbound("hi"), NOW, FakeRuntime())
    assert first.state.status == "sleeping" and first.state.wake_at == NOW + timedelta(seconds=60)
    assert (await reply(flow, first.state, "still there?")).messages == []
    early = await resume(flow, first.state, NOW + timedelta(seconds=59), FakeRuntime())
    assert early.messages == [] and early.state.status == "sleeping"
    woken = await resume(flow, first.state, NOW + timedelta(seconds=60), FakeRuntime())
    (template,) = woken.messages
    assert template.type == "template" and template.name == "follow_up" and template.language == "pt_BR"
    assert template.components == [{"type": "body", "parameters": [{"type": "text", "text": "Cy"}]}]
    assert woken.state.status == "ended" and woken.state.wake_at is None


async def test_a_loop_without_waiting_is_stopped() -> None:
    flow = loaded([
        {"id": "s", "type": "start", "next": "a"},
        {"id": "a", "type": "message", "text": "again", "next": "b"},
        {"id": "b", "type": "message", "text": "and again", "next": "a"},
    ])
    with pytest.raises(FlowLoopError):
        await start(flow)
    assert MAX_FLOW_ITERATIONS == 100


async def test_ended_conversation_does_nothing() -> None:
    step = await reply(ASK_NAME, ConversationState("e", {}, "ended"), "hi")
    assert step.messages == [] and step.state.status == "ended"


async def test_last_message_is_available_to_the_flow() -> None:
    flow = loaded([
        {"id": "s", "type": "start", "next": "m"},
        {"id": "m", "type": "message", "text": "You said: {{last_message}}", "next": "e"},
        {"id": "e", "type": "end"},
    ])
    assert bodies(await start(flow, text="pão de queijo")) == ["You said: pão de queijo"]


def test_render_leaves_unknown_variables_empty() -> None:
    assert render("Hi {{name}}, {{ missing }}!", {"name": "Bo"}) == "Hi Bo, !"
