import pytest

from pytake_flow_engine.domain.expressions import (
    MAX_EXPRESSION_LENGTH,
    ExpressionError,
    evaluate,
    parse,
    variables_in,
)

VARS = {"age": "42", "name": "Ada Lovelace", "vip": True, "tags": ["gold", "early"], "score": 7.5, "empty": ""}


@pytest.mark.parametrize(("source", "expected"), [
    ("age > 18", True),
    ("age >= 42 and age <= 42", True),
    ("age == 42", True),
    ("age != '42'", False),
    ("score < 8", True),
    ("name == 'Ada Lovelace'", True),
    ('name contains "love"', True),
    ("tags contains 'GOLD'", True),
    ("tags contains 'silver'", False),
    ("not vip", False),
    ("vip == true", True),
    ("missing == null", True),
    ("missing > 3", False),
    ("empty", False),
    ("name", True),
    ("age > 50 or (name contains 'ada' and not missing)", True),
    ("not not vip", True),
    ("'b' > 'a'", True),
    ("name < 3", False),
    ("1 == 1.0", True),
])
def test_evaluates(source: str, expected: bool) -> None:
    assert evaluate(source, VARS) is expected


def test_and_binds_tighter_than_or() -> None:
    assert evaluate("true or false and false", {}) is True
    assert evaluate("(true or false) and false", {}) is False


def test_variables_are_collected() -> None:
    assert variables_in(parse("a > 1 and (b contains 'x' or not c)")) == {"a", "b", "c"}


@pytest.mark.parametrize("source", [
    "__import__('os').system('id')",
    "__class__",
    "age.__class__",
    "name.upper",
    "open('/etc/passwd')",
    "len(name) > 3",
    "tags[0] == 'gold'",
    "2 ** 99999999",
    "9 * 9",
    "1e999999 > 1",
    "99999999999999999999999 > 1",
    "lambda: 1",
    "age > 1; import os",
    "age > 18 > 3",
    "age >",
    "(age > 1",
    "age > 1)",
    "",
    "'unterminated",
    "a = 1",
    "{}",
    "`id`",
])
def test_malicious_or_malformed_input_is_refused(source: str) -> None:
    with pytest.raises(ExpressionError):
        parse(source)


def test_deep_nesting_is_refused_without_blowing_the_stack() -> None:
    with pytest.raises(ExpressionError, match="nested"):
        parse("(" * 200 + "1" + ")" * 200)
    with pytest.raises(ExpressionError, match="nested"):
        parse("not " * 100 + "x")
    assert evaluate("(" * 10 + "1 == 1" + ")" * 10, {}) is True


def test_very_long_input_is_refused() -> None:
    with pytest.raises(ExpressionError, match="longer"):
        parse("a or " * 200 + "b")
    assert len("a or " * 200) > MAX_EXPRESSION_LENGTH


def test_values_are_never_evaluated_as_code() -> None:
    assert evaluate("name == 'x'", {"name": "__import__('os').system('id')"}) is False
    assert evaluate("name contains 'import'", {"name": "__import__('os')"}) is True
