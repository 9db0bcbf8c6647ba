import pytest
from pydantic import ValidationError

from pytake_devstack.demo_tenant import DEMO_FLOW
from pytake_flow_engine.domain.flow import FlowDefinition, check_definition


def errors_of(document: dict) -> list[str]:
    flow, errors = check_definition(document)
    assert flow is None
    return [" ".join(e["loc"]) + ": " + e["msg"] for e in errors]


def test_demo_flow_is_valid() -> None:
    flow, errors = check_definition(DEMO_FLOW)
    assert errors == [] and flow is not None


def test_graph_errors_are_all_reported() -> None:
    errors = errors_of({"nodes": [
        {"id": "m", "type": "message", "text": "x", "next": "nowhere"},
        {"id": "e", "type": "end"},
    ]})
    text = "\n".join(errors)
    assert "exactly one start node" in text and "missing node 'nowhere'" in text


def test_model_validate_refuses_an_unsound_graph() -> None:
    with pytest.raises(ValidationError, match="exactly one start node"):
        FlowDefinition.model_validate({"nodes": [{"id": "e", "type": "end"}, {"id": "f", "type": "end"}]})


def test_every_graph_problem_is_listed_at_once() -> None:
    errors = errors_of({"nodes": [
        {"id": "s", "type": "start", "next": "c"},
        {"id": "s2", "type": "start", "next": "e"},
        {"id": "c", "type": "condition", "branches": [{"when": "score > 3 and", "next": "e"}], "else": "gone"},
        {"id": "orphan", "type": "message", "text": "Hi {{nobody}}", "next": "e"},
        {"id": "e", "type": "end"},
        {"id": "e", "type": "end"},
    ]})
    text = "\n".join(errors)
    for expected in ("found 2", "missing node 'gone'", "node ids must be unique: e",
                     "node 'orphan' uses unknown variable 'nobody'", "branch 0: expected a value"):
        assert expected in text, expected


def test_unreachable_nodes_and_unknown_variables() -> None:
    errors = errors_of({"nodes": [
        {"id": "s", "type": "start", "next": "c"},
        {"id": "c", "type": "condition", "branches": [{"when": "tier == 'gold'", "next": "e"}], "else": "e"},
        {"id": "lost", "type": "message", "text": "never", "next": "e"},
        {"id": "e", "type": "end", "text": "{{ghost}}"},
    ]})
    assert errors == ["nodes: node 'lost' is not reachable from the start",
                      "nodes: node 'c' uses unknown variable 'tier'",
                      "nodes: node 'e' uses unknown variable 'ghost'"]


def test_declared_assigned_and_builtin_variables_are_known() -> None:
    flow, errors = check_definition({"variables": {"tier": "basic"}, "nodes": [
        {"id": "s", "type": "start", "next": "h"},
        {"id": "h", "type": "http_request", "url": "https://x.example/{{contact_id}}", "save": {"points": "p"},
         "next": "v"},
        {"id": "v", "type": "set_variable", "variable": "label", "value": "{{tier}}:{{points}}", "next": "c"},
        {"id": "c", "type": "condition", "branches": [{"when": "label contains 'gold'", "next": "e"}], "else": "e"},
        {"id": "e", "type": "end", "text": "{{contact_name}} {{last_message}}"},
    ]})
    assert errors == [] and flow is not None


def test_meta_limits_for_buttons_and_lists() -> None:
    base = [{"id": "s", "type": "start", "next": "b"}, {"id": "e", "type": "end"}]
    too_many = errors_of({"nodes": [*base, {"id": "b", "type": "buttons", "text": "?", "buttons": [
        {"id": str(i), "title": f"B{i}", "next": "e"} for i in range(4)]}]})
    assert any("at most 3" in e for e in too_many)
    too_long = errors_of({"nodes": [*base, {"id": "b", "type": "buttons", "text": "?", "buttons": [
        {"id": "x", "title": "A title that is way too long", "next": "e"}]}]})
    assert any("title" in e and "20" in e for e in too_long)
    rows = errors_of({"nodes": [*base, {"id": "b", "type": "list", "text": "?", "button": "Open", "rows": [
        {"id": str(i), "title": f"R{i}", "next": "e"} for i in range(11)]}]})
    assert any("at most 10" in e for e in rows)
    duplicate = errors_of({"nodes": [*base, {"id": "b", "type": "buttons", "text": "?", "buttons": [
        {"id": "x", "title": "A", "next": "e"}, {"id": "x", "title": "B", "next": "e"}]}]})
    assert any("duplicate choice ids" in e for e in duplicate)


@pytest.mark.parametrize(("node", "fragment"), [
    ({"id": "n", "type": "message", "next": "e"}, "text"),
    ({"id": "n", "type": "question", "text": "?", "next": "e"}, "variable"),
    ({"id": "n", "type": "question", "text": "?", "variable": "v", "validation": "options", "next": "e"},
     "needs a list of options"),
    ({"id": "n", "type": "question", "text": "?", "variable": "9lives", "next": "e"}, "variable"),
    ({"id": "n", "type": "http_request", "url": "ftp://x", "next": "e"}, "http"),
    ({"id": "n", "type": "http_request", "url": "https://x", "timeout_ms": 60000, "next": "e"}, "timeout_ms"),
    ({"id": "n", "type": "delay", "seconds": 0, "next": "e"}, "seconds"),
    ({"id": "n", "type": "template", "next": "e"}, "name"),
    ({"id": "n", "type": "jump", "flow_id": "not-a-uuid"}, "flow_id"),
    ({"id": "n", "type": "set_variable", "variable": "v", "next": "e"}, "value"),
    ({"id": "n", "type": "handoff"}, "next"),
    ({"id": "n", "type": "condition", "branches": [], "else": "e"}, "branches"),
    ({"id": "n", "type": "teleport", "next": "e"}, "type"),
    ({"id": "n", "type": "message", "text": "x", "next": "e", "colour": "red"}, "colour"),
])
def test_required_fields_per_node_type(node: dict, fragment: str) -> None:
    errors = errors_of({"nodes": [{"id": "s", "type": "start", "next": "n"}, node, {"id": "e", "type": "end"}]})
    assert any(fragment in e for e in errors), errors


def test_fallback_template_setting() -> None:
    flow, errors = check_definition({**DEMO_FLOW, "settings": {
        "fallback_template": {"name": "we_miss_you", "language": "en_US", "parameters": ["{{name}}"]},
        "restart_keywords": ["restart", "menu"]}})
    assert errors == [] and flow is not None
    assert flow.fallback_template is not None and flow.fallback_template.name == "we_miss_you"
    assert flow.restart_keywords == {"restart", "menu"}
    assert any("unknown variable 'ghost'" in e for e in errors_of({**DEMO_FLOW, "settings": {
        "fallback_template": {"name": "t", "parameters": ["{{ghost}}"]}}}))


def test_cycles_are_allowed_at_publish_time() -> None:
    flow, errors = check_definition({"nodes": [
        {"id": "s", "type": "start", "next": "a"},
        {"id": "a", "type": "message", "text": "again", "next": "a"},
    ]})
    assert errors == [] and flow is not None


def test_published_document_round_trips() -> None:
    document = {"nodes": [
        {"id": "s", "type": "start", "next": "c"},
        {"id": "c", "type": "condition", "branches": [{"when": "true", "next": "e"}], "else": "e"},
        {"id": "e", "type": "end"},
    ]}
    flow = FlowDefinition.model_validate(document)
    dumped = flow.model_dump(mode="json", exclude_none=True)
    assert dumped["nodes"][1]["else"] == "e"
    assert FlowDefinition.model_validate(dumped) == flow


def test_builtin_variables_cannot_be_assigned() -> None:
    errors = errors_of({"nodes": [
        {"id": "s", "type": "start", "next": "q"},
        {"id": "q", "type": "question", "variable": "contact_name", "text": "Name?", "next": "e"},
        {"id": "e", "type": "end"},
    ]})
    assert errors == ["nodes: node 'q' assigns 'contact_name', which the engine sets itself"]
