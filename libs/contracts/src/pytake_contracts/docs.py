"""JSON Schemas and the AsyncAPI document, generated from the contracts.

Layout (committed in libs/contracts):
  schemas/<event_type>/v<N>/0001.json, 0002.json, ...  every published schema of that
                                                       event version; the last is current
  asyncapi.json                                        the whole system's topics and events
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import topics as topic_catalog
from .compat import breaking_changes
from .envelope import Event

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # libs/contracts
SCHEMAS_DIR = PACKAGE_ROOT / "schemas"
ASYNCAPI_PATH = PACKAGE_ROOT / "asyncapi.json"
VERSION = "1.0.0"


def event_classes() -> list[type[Event]]:
    return [Event.registry[key] for key in sorted(Event.registry)]


def event_schema(cls: type[Event]) -> dict[str, Any]:
    schema = cls.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"urn:pytake:event:{_event_type(cls)}:v{_version(cls)}"
    return schema


def _event_type(cls: type[Event]) -> str:
    return str(cls.model_fields["event_type"].default)


def _version(cls: type[Event]) -> int:
    return int(cls.model_fields["schema_version"].default)


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def history_dir(cls: type[Event], root: Path = SCHEMAS_DIR) -> Path:
    return root / _event_type(cls) / f"v{_version(cls)}"


def history(cls: type[Event], root: Path = SCHEMAS_DIR) -> list[Path]:
    return sorted(history_dir(cls, root).glob("*.json"))


@dataclass(frozen=True)
class Finding:
    event: str
    problem: str


def check(root: Path = SCHEMAS_DIR, asyncapi_path: Path = ASYNCAPI_PATH) -> list[Finding]:
    """Committed docs equal what the code generates, and no schema breaks its history."""
    findings: list[Finding] = []
    for cls in event_classes():
        name = f"{_event_type(cls)} v{_version(cls)}"
        current = event_schema(cls)
        snapshots = history(cls, root)
        if not snapshots:
            findings.append(Finding(name, "no committed schema: run `pytake-contracts docs`"))
            continue
        if json.loads(snapshots[-1].read_text()) != current:
            findings.append(Finding(name, "committed schema differs from the code: run `pytake-contracts docs`"))
        for snapshot in snapshots:
            for problem in breaking_changes(json.loads(snapshot.read_text()), current):
                findings.append(Finding(name, f"breaks {snapshot.name}: {problem}"))
    if not asyncapi_path.exists() or asyncapi_path.read_text() != render(asyncapi()):
        findings.append(Finding("asyncapi", "asyncapi.json differs from the code: run `pytake-contracts docs`"))
    return findings


def write(root: Path = SCHEMAS_DIR, asyncapi_path: Path = ASYNCAPI_PATH) -> list[Finding]:
    """Append a new snapshot for every changed event version, if the change is compatible."""
    refused: list[Finding] = []
    for cls in event_classes():
        current = event_schema(cls)
        snapshots = history(cls, root)
        if snapshots and json.loads(snapshots[-1].read_text()) == current:
            continue
        problems = [f"breaks {s.name}: {p}" for s in snapshots
                    for p in breaking_changes(json.loads(s.read_text()), current)]
        if problems:
            refused.extend(Finding(f"{_event_type(cls)} v{_version(cls)}", p) for p in problems)
            continue
        target = history_dir(cls, root)
        target.mkdir(parents=True, exist_ok=True)
        (target / f"{len(snapshots) + 1:04d}.json").write_text(render(current))
    if not refused:
        asyncapi_path.write_text(render(asyncapi()))
    return refused


def asyncapi() -> dict[str, Any]:
    """An AsyncAPI 3.0 document of every topic, who produces and consumes it, and its events."""
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    template = "#/components/schemas/{model}"
    for cls in event_classes():
        schema = cls.model_json_schema(mode="validation", ref_template=template)
        for def_name, definition in schema.pop("$defs", {}).items():
            schemas[def_name] = definition
        schemas[cls.__name__] = schema
        message_id = f"{cls.__name__}V{_version(cls)}"
        messages[message_id] = {
            "name": _event_type(cls),
            "title": f"{_event_type(cls)} v{_version(cls)}",
            "summary": (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else _event_type(cls),
            "contentType": "application/json",
            "headers": {"type": "object", "properties": {
                "event_type": {"type": "string", "const": _event_type(cls)},
                "schema_version": {"type": "string", "const": str(_version(cls))},
                "traceparent": {"type": "string", "description": "W3C trace context"},
            }},
            "payload": {"$ref": f"#/components/schemas/{cls.__name__}"},
        }
    for spec in topic_catalog.CATALOG:
        channel_id = spec.name.replace(".", "_")
        retention_days = spec.retention_ms / 86_400_000
        channels[channel_id] = {
            "address": spec.name,
            "description": (f"Key: `{spec.key}`. Partitions: {spec.partitions}. Retention: {retention_days:g} days. "
                            f"Produced by {spec.producer}; consumed by {', '.join(spec.consumers)}."),
            "messages": {f"{cls.__name__}V{_version(cls)}": {"$ref": f"#/components/messages/{cls.__name__}V{_version(cls)}"}
                         for cls in spec.events},
        }
        operations[f"{spec.producer}_sends_{channel_id}"] = {
            "action": "send", "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": f"{spec.producer} publishes to {spec.name}",
        }
        for consumer in spec.consumers:
            operations[f"{consumer.replace('-', '_')}_receives_{channel_id}"] = {
                "action": "receive", "channel": {"$ref": f"#/channels/{channel_id}"},
                "summary": f"{consumer} consumes {spec.name}",
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "PyTake events",
            "version": VERSION,
            "description": ("Every event PyTake's services exchange over Kafka. Each record's value is a JSON "
                            "envelope; readers ignore unknown fields; a breaking change is a new schema_version."),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
