"""The compatibility gate: may a new JSON Schema of an event version replace an old one?

Readers ignore unknown fields, so a change is compatible when an old producer's events
still validate for a new consumer and a new producer's events still carry everything an
old consumer reads. Breaking: a removed (or renamed) field, a changed type, a field made
required or optional, a new required field, a removed or added union member or enum value.
Compatible: a new optional field, a changed description or default.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


class _Doc:
    """A schema document, able to resolve its local `$ref`s."""

    def __init__(self, root: Schema) -> None:
        self.root = root

    def resolve(self, node: Schema) -> Schema:
        seen = 0
        while "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                raise ValueError(f"only local references are supported: {ref}")
            target: Any = self.root
            for part in ref[2:].split("/"):
                target = target[part]
            node = target
            seen += 1
            if seen > 50:
                raise ValueError(f"reference cycle at {ref}")
        return node


def _variants(node: Schema) -> list[Schema] | None:
    for key in ("anyOf", "oneOf"):
        if key in node:
            return list(node[key])
    return None


def _kind(doc: _Doc, node: Schema) -> str:
    """A short signature of a schema node, used to match union members and name changes."""
    node = doc.resolve(node)
    if "const" in node or "enum" in node:
        return "enum"
    if _variants(node) is not None:
        return "union"
    kind = node.get("type", "any")
    if isinstance(kind, list):
        kind = "|".join(sorted(kind))
    if kind == "object" and "title" in node and "properties" in node:
        return f"object:{node['title']}"
    if kind == "string" and "format" in node:
        return f"string:{node['format']}"
    return str(kind)


def _enum(node: Schema) -> list[Any]:
    return [node["const"]] if "const" in node else list(node.get("enum", []))


def breaking_changes(old: Schema, new: Schema) -> list[str]:
    """Every way `new` could break a producer or consumer written against `old`."""
    problems: list[str] = []
    _compare(_Doc(old), old, _Doc(new), new, "$", problems, depth=0)
    return problems


def _compare(od: _Doc, old: Schema, nd: _Doc, new: Schema, path: str, problems: list[str], depth: int) -> None:
    if depth > 64:
        return
    old, new = od.resolve(old), nd.resolve(new)
    old_variants, new_variants = _variants(old), _variants(new)
    if old_variants is not None or new_variants is not None:
        olds = {_kind(od, v): v for v in (old_variants or [old])}
        news = {_kind(nd, v): v for v in (new_variants or [new])}
        for gone in sorted(set(olds) - set(news)):
            problems.append(f"{path}: type {gone} no longer accepted")
        for added in sorted(set(news) - set(olds)):
            problems.append(f"{path}: new type {added} that old consumers cannot read")
        for kind in sorted(set(olds) & set(news)):
            _compare(od, olds[kind], nd, news[kind], path, problems, depth + 1)
        return
    old_kind, new_kind = _kind(od, old), _kind(nd, new)
    if old_kind.split(":")[0] != new_kind.split(":")[0] or (
        old_kind.startswith("string:") and old_kind != new_kind
    ):
        problems.append(f"{path}: type changed from {old_kind} to {new_kind}")
        return
    if old_kind == "enum":
        old_values, new_values = set(map(repr, _enum(old))), set(map(repr, _enum(new)))
        removed, added = old_values - new_values, new_values - old_values
        for value in sorted(removed):
            problems.append(f"{path}: enum value {value} removed")
        for value in sorted(added):
            problems.append(f"{path}: enum value {value} added, old consumers reject it")
    if new.get("type") == "array" or old.get("type") == "array":
        _compare(od, old.get("items", {}), nd, new.get("items", {}), f"{path}[]", problems, depth + 1)
    if "properties" in old or "properties" in new:
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
        for name in sorted(set(old_props) - set(new_props)):
            problems.append(f"{path}.{name}: field removed")
        for name in sorted(set(new_props) - set(old_props)):
            if name in new_required:
                problems.append(f"{path}.{name}: new required field")
        for name in sorted(set(old_props) & set(new_props)):
            if name in new_required and name not in old_required:
                problems.append(f"{path}.{name}: optional field made required")
            if name in old_required and name not in new_required:
                problems.append(f"{path}.{name}: required field made optional")
            _compare(od, old_props[name], nd, new_props[name], f"{path}.{name}", problems, depth + 1)
    old_extra, new_extra = old.get("additionalProperties"), new.get("additionalProperties")
    if isinstance(old_extra, dict) or isinstance(new_extra, dict):
        _compare(od, old_extra or {}, nd, new_extra or {}, f"{path}{{*}}", problems, depth + 1)
