"""The condition language: a tiny tokenizer and recursive-descent parser. Never `eval`.

    expr       := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := operand (("==" | "!=" | "<" | "<=" | ">" | ">=" | "contains") operand)?
    operand    := NUMBER | STRING | NAME | "true" | "false" | "null" | "(" expr ")"

Names are flow variables (letters, digits, underscore; no dots, no dunders). There is no
call, attribute, index or arithmetic syntax at all, so nothing can reach Python objects;
input length, nesting depth and number size are bounded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

MAX_EXPRESSION_LENGTH = 500
MAX_NESTING = 20
MAX_NUMBER_DIGITS = 18

COMPARATORS = ("==", "!=", "<=", ">=", "<", ">", "contains")
KEYWORDS = {"and", "or", "not", "contains", "true", "false", "null"}

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|<|>|\(|\))
""", re.VERBOSE)


class ExpressionError(ValueError):
    """The expression is not in the language (or too big); it is refused whole."""


@dataclass(frozen=True)
class Token:
    kind: str  # number, string, name, op, keyword, end
    text: str
    position: int


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Variable:
    name: str


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class Logical:
    operator: str  # and / or
    left: Node
    right: Node


@dataclass(frozen=True)
class Comparison:
    operator: str
    left: Node
    right: Node


Node = Literal | Variable | Not | Logical | Comparison


def tokenize(source: str) -> list[Token]:
    if len(source) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_EXPRESSION_LENGTH} characters")
    tokens: list[Token] = []
    position = 0
    while position < len(source):
        match = _TOKEN.match(source, position)
        if match is None:
            raise ExpressionError(f"unexpected character {source[position]!r} at {position}")
        kind = match.lastgroup or ""
        text = match.group()
        if kind == "number" and len(text.replace(".", "")) > MAX_NUMBER_DIGITS:
            raise ExpressionError(f"number too long at {position}")
        if kind == "name":
            if text.startswith("__"):
                raise ExpressionError(f"names may not start with '__' (at {position})")
            if text in KEYWORDS:
                kind = "keyword"
        if kind != "space":
            tokens.append(Token(kind, text, position))
        position = match.end()
    tokens.append(Token("end", "", len(source)))
    return tokens


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.index = 0
        self.depth = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def take(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def accept(self, text: str) -> bool:
        if self.current.kind in ("keyword", "op") and self.current.text == text:
            self.index += 1
            return True
        return False

    def fail(self, what: str) -> ExpressionError:
        token = self.current
        found = "end of expression" if token.kind == "end" else repr(token.text)
        return ExpressionError(f"expected {what} at {token.position}, found {found}")

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise ExpressionError(f"expression nested deeper than {MAX_NESTING}")

    def parse(self) -> Node:
        node = self.or_expr()
        if self.current.kind != "end":
            raise self.fail("an operator or the end")
        return node

    def or_expr(self) -> Node:
        node = self.and_expr()
        while self.accept("or"):
            node = Logical("or", node, self.and_expr())
        return node

    def and_expr(self) -> Node:
        node = self.not_expr()
        while self.accept("and"):
            node = Logical("and", node, self.not_expr())
        return node

    def not_expr(self) -> Node:
        if self.accept("not"):
            self.nested()
            node = Not(self.not_expr())
            self.depth -= 1
            return node
        return self.comparison()

    def comparison(self) -> Node:
        left = self.operand()
        token = self.current
        if token.kind in ("op", "keyword") and token.text in COMPARATORS:
            self.take()
            right = self.operand()
            if self.current.kind in ("op", "keyword") and self.current.text in COMPARATORS:
                raise ExpressionError(f"chained comparison at {self.current.position}; use 'and'")
            return Comparison(token.text, left, right)
        return left

    def operand(self) -> Node:
        token = self.current
        if token.kind == "number":
            self.take()
            return Literal(float(token.text) if "." in token.text else int(token.text))
        if token.kind == "string":
            self.take()
            return Literal(_unquote(token.text))
        if token.kind == "name":
            self.take()
            return Variable(token.text)
        if token.kind == "keyword" and token.text in ("true", "false", "null"):
            self.take()
            return Literal({"true": True, "false": False, "null": None}[token.text])
        if self.accept("("):
            self.nested()
            node = self.or_expr()
            if not self.accept(")"):
                raise self.fail("')'")
            self.depth -= 1
            return node
        raise self.fail("a value")


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


@lru_cache(maxsize=4096)
def parse(source: str) -> Node:
    """Parse or raise ExpressionError. Cached: flows are immutable and expressions repeat."""
    if not source.strip():
        raise ExpressionError("empty expression")
    return _Parser(tokenize(source)).parse()


def variables_in(node: Node) -> set[str]:
    if isinstance(node, Variable):
        return {node.name}
    if isinstance(node, Not):
        return variables_in(node.operand)
    if isinstance(node, Logical | Comparison):
        return variables_in(node.left) | variables_in(node.right)
    return set()


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip().replace(",", ".")
        if re.fullmatch(r"-?\d{1,18}(?:\.\d{1,18})?", text):
            return float(text)
    return None


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip() != ""
    return bool(value)


def _compare(operator: str, left: Any, right: Any) -> bool:
    if operator == "contains":
        if isinstance(left, list):
            return any(str(item).casefold() == str(right).casefold() for item in left)
        if left is None or right is None:
            return False
        return str(right).casefold() in str(left).casefold()
    left_number, right_number = _number(left), _number(right)
    numeric = left_number is not None and right_number is not None
    if operator in ("==", "!="):
        if numeric:
            equal = left_number == right_number
        elif isinstance(left, bool) or isinstance(right, bool) or left is None or right is None:
            equal = left == right
        else:
            equal = str(left) == str(right)
        return equal if operator == "==" else not equal
    if numeric:
        a, b = left_number, right_number
    elif isinstance(left, str) and isinstance(right, str):
        a, b = left, right  # type: ignore[assignment]
    else:
        return False  # ordering across kinds (or with null) is never true
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[operator]  # type: ignore[operator]


def _value(node: Node, variables: dict[str, Any]) -> Any:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Variable):
        return variables.get(node.name)
    return _evaluate(node, variables)


def _evaluate(node: Node, variables: dict[str, Any]) -> bool:
    if isinstance(node, Logical):
        left = _evaluate(node.left, variables)
        if node.operator == "and":
            return left and _evaluate(node.right, variables)
        return left or _evaluate(node.right, variables)
    if isinstance(node, Not):
        return not _evaluate(node.operand, variables)
    if isinstance(node, Comparison):
        return _compare(node.operator, _value(node.left, variables), _value(node.right, variables))
    return _truthy(_value(node, variables))


def evaluate(source: str, variables: dict[str, Any]) -> bool:
    """True or False for `source` over `variables`; unknown variables are null."""
    return _evaluate(parse(source), variables)
