import pytest
from pydantic import ValidationError

from pytake_flow_engine.domain.executor import ConversationState, FlowLoopError, advance, begin
from pytake_flow_engine.domain.flow import MAX_FLOW_ITERATIONS, FlowDefinition, render

ASK_NAME = FlowDefinition.model_validate({"nodes": [
    {"id": "s", "type": "start", "next": "q"},
    {"id": "q", "type": "question", "variable": "name", "text": "Your name?", "next": "m"},
    {"id": "m", "type": "message", "text": "Hello {{ name }}!", "next": "e"},
    {"id": "e", "type": "end", "text": "Bye {{name}}"},
]})


def test_question_waits_then_answer_is_substituted() -> None:
    first = advance(ASK_NAME, begin(ASK_NAME), None)
    assert first.replies == ["Your name?"]
    assert first.state.status == "waiting" and first.state.node_id == "q"
    second = advance(ASK_NAME, first.state, "  Ada ")
    assert second.replies == ["Hello Ada!", "Bye Ada"]
    assert second.state.status == "ended"
    assert second.state.variables == {"name": "Ada"}
    assert second.visited == ["m", "e"]


def test_advance_does_not_mutate_the_given_state() -> None:
    state = advance(ASK_NAME, begin(ASK_NAME), None).state
    advance(ASK_NAME, state, "Ada")
    assert state.variables == {} and state.status == "waiting"


def test_invalid_answer_reprompts_then_gives_up() -> None:
    flow = FlowDefinition.model_validate({"nodes": [
        {"id": "s", "type": "start", "next": "q"},
        {"id": "q", "type": "question", "variable": "age", "text": "Age?", "validation": "number",
         "retry_text": "A number, please.", "max_retries": 1, "next": "e"},
        {"id": "e", "type": "end"},
    ]})
    waiting = advance(flow, begin(flow), None).state
    retry = advance(flow, waiting, "old")
    assert retry.replies == ["A number, please."] and retry.state.status == "waiting"
    gave_up = advance(flow, retry.state, "very old")
    assert gave_up.state.status == "ended"
    accepted = advance(flow, waiting, "42")
    assert accepted.state.variables == {"age": "42"} and accepted.state.status == "ended"


def test_email_validation() -> None:
    flow = FlowDefinition.model_validate({"nodes": [
        {"id": "s", "type": "start", "next": "q"},
        {"id": "q", "type": "question", "variable": "mail", "text": "Mail?", "validation": "email", "next": "e"},
        {"id": "e", "type": "end"},
    ]})
    waiting = advance(flow, begin(flow), None).state
    assert advance(flow, waiting, "not-an-email").state.status == "waiting"
    assert advance(flow, waiting, "ada@example.org").state.variables == {"mail": "ada@example.org"}


def test_a_loop_without_waiting_is_stopped() -> None:
    flow = FlowDefinition.model_validate({"nodes": [
        {"id": "s", "type": "start", "next": "a"},
        {"id": "a", "type": "message", "text": "again", "next": "b"},
        {"id": "b", "type": "message", "text": "and again", "next": "a"},
    ]})
    with pytest.raises(FlowLoopError):
        advance(flow, begin(flow), None)
    assert MAX_FLOW_ITERATIONS == 100


def test_ended_conversation_does_nothing() -> None:
    step = advance(ASK_NAME, ConversationState("e", {}, "ended"), "hi")
    assert step.replies == [] and step.state.status == "ended"


def test_graph_errors_are_all_reported() -> None:
    with pytest.raises(ValidationError) as caught:
        FlowDefinition.model_validate({"nodes": [
            {"id": "m", "type": "message", "text": "x", "next": "nowhere"},
            {"id": "e", "type": "end"},
        ]})
    text = str(caught.value)
    assert "exactly one start node" in text and "missing node 'nowhere'" in text


def test_render_leaves_unknown_variables_empty() -> None:
    assert render("Hi {{name}}, {{ missing }}!", {"name": "Bo"}) == "Hi Bo, !"
