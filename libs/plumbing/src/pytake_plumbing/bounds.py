"""Bounded input types for routes and request models: a number the database cannot hold, or a page
no client needs, is a 422 at the edge rather than an error deep in a query.

PostgreSQL's `integer` holds -2^31..2^31-1 and `bigint` -2^63..2^63-1; asyncpg refuses a larger
Python int before the query runs. `OFFSET` takes a bigint, but paging a million rows deep is a
scan no client needs (it should filter instead): offsets stop there.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from pydantic import BeforeValidator, Field, StrictFloat, StrictInt, StringConstraints, TypeAdapter

PG_INT_MIN = -(2**31)
PG_INT_MAX = 2**31 - 1
PG_BIGINT_MIN = -(2**63)
PG_BIGINT_MAX = 2**63 - 1
MAX_OFFSET = 1_000_000
MAX_PAGE_SIZE = 200

# Neither PostgreSQL's text nor JSONB can hold U+0000; the schema says so, for clients and fuzzers.
# (The request guard refuses NUL anywhere in a request; this makes the documented schema honest.)
NO_NUL = r"^[^\x00]*$"
NulFreeStr = Annotated[str, StringConstraints(pattern=NO_NUL)]

PgInt = Annotated[int, Field(ge=PG_INT_MIN, le=PG_INT_MAX)]
"""Fits an `integer` column."""
PgPositiveInt = Annotated[int, Field(ge=1, le=PG_INT_MAX)]
"""A positive number that fits an `integer` column: version numbers, counters, ids."""
PgBigInt = Annotated[int, Field(ge=PG_BIGINT_MIN, le=PG_BIGINT_MAX)]
"""Fits a `bigint` column."""

JsonInt = Annotated[int, BeforeValidator(TypeAdapter(StrictInt | StrictFloat).validate_python)]
"""An integer in a JSON body as JSON Schema means it: a number without a fraction (2 or 2.0), not a
boolean (Pydantic's lax `int` takes true for 1) nor a string. Not for query parameters (all text)."""

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size.")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip.")]
