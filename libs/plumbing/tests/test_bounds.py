from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from pytake_plumbing.bounds import PG_INT_MAX, JsonInt, NulFreeStr, PgInt, PgPositiveInt


@pytest.mark.parametrize(("kind", "good", "bad"), [
    (PgInt, [-(2**31), 0, PG_INT_MAX], [-(2**31) - 1, PG_INT_MAX + 1, 10**20]),
    (PgPositiveInt, [1, PG_INT_MAX], [0, -1, PG_INT_MAX + 1]),
    (JsonInt, [3, 3.0, -7], [True, False, "3", 3.5, None]),
    (NulFreeStr, ["", "text", "\\u0000"], ["\x00", "a\x00b"]),
])
def test_bounded_types(kind, good, bad) -> None:
    adapter = TypeAdapter(kind)
    for value in good:
        adapter.validate_python(value)
    for value in bad:
        with pytest.raises(ValidationError):
            adapter.validate_python(value)
