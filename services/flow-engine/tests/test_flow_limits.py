"""A flow's size is bounded, draft or published: at most MAX_FLOW_NODES nodes (422 naming the limit),
and an API body of at most MAX_FLOW_DOCUMENT_BYTES for a flow document (413)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from pytake_flow_engine.domain.flow import MAX_FLOW_DOCUMENT_BYTES, MAX_FLOW_NODES, FlowDraft, check_definition


def chain(count: int) -> dict[str, Any]:
    """A sound flow of `count` nodes: start, messages, end."""
    nodes: list[dict[str, Any]] = [{"id": "start", "type": "start", "next": "n1"}]
    nodes += [{"id": f"n{i}", "type": "message", "text": "Hi", "next": f"n{i + 1}"} for i in range(1, count - 1)]
    nodes.append({"id": f"n{count - 1}", "type": "end"})
    return {"nodes": nodes}


def test_the_limits() -> None:
    assert MAX_FLOW_NODES == 500
    assert MAX_FLOW_DOCUMENT_BYTES == 256 * 1024
    # The largest flow allowed fits the byte limit with room for ordinary node texts.
    assert len(json.dumps(chain(MAX_FLOW_NODES))) < MAX_FLOW_DOCUMENT_BYTES / 4


def test_a_draft_of_more_than_500_nodes_is_refused_naming_the_limit() -> None:
    with pytest.raises(ValidationError) as caught:
        FlowDraft.model_validate(chain(MAX_FLOW_NODES + 1))
    [error] = caught.value.errors()
    assert error["loc"] == ("nodes",) and "500" in error["msg"]


def test_a_draft_is_kept_as_it_was_sent() -> None:
    for document in (chain(MAX_FLOW_NODES), {}, {"nodes": None}, {"notes": "wip", "variables": {"x": 1}},
                     {"nodes": [{"id": "half-done"}], "settings": {"restart_keywords": ["menu"]}}):
        assert FlowDraft.model_validate(document).document() == document


def test_a_draft_may_be_unfinished_but_its_nodes_are_objects() -> None:
    assert FlowDraft.model_validate({"nodes": [{"type": "nonsense"}]}).document() == {"nodes": [{"type": "nonsense"}]}
    with pytest.raises(ValidationError):
        FlowDraft.model_validate({"nodes": "start → end"})


def test_publishing_more_than_500_nodes_is_refused_naming_the_limit() -> None:
    flow, errors = check_definition(chain(MAX_FLOW_NODES + 1))
    assert flow is None and any(e["loc"] == ["nodes"] and "500" in e["msg"] for e in errors), errors
    flow, errors = check_definition(chain(MAX_FLOW_NODES))
    assert errors == [] and flow is not None
