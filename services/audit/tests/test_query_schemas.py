"""The audit API's request schemas accept what their OpenAPI schema says, and refuse the rest
(found by schemathesis): Unix times for instants, true for a number of days, NUL in text."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from pytake_audit.domain.views import MessageSearch, RetentionUpdate, TimeRange


@pytest.mark.parametrize("text", ["0.5", "1700000000", "2026-03-01", "2026-03-01T00:00:00", "yesterday"])
def test_an_instant_is_an_rfc3339_date_time_with_its_offset(text) -> None:
    with pytest.raises(ValidationError):
        TimeRange.model_validate({"since": text})


def test_rfc3339_date_times_and_datetimes_are_instants() -> None:
    window = TimeRange.model_validate({"since": "2026-03-01T00:00:00Z", "until": "2026-03-02T01:00:00+01:00"})
    assert window.since == datetime(2026, 3, 1, tzinfo=UTC)
    assert window.until == datetime(2026, 3, 2, tzinfo=UTC)
    assert TimeRange(since=datetime(2026, 3, 1, tzinfo=UTC)).since == datetime(2026, 3, 1, tzinfo=UTC)


def test_since_must_be_before_until() -> None:
    with pytest.raises(ValidationError, match="since must be before until"):
        TimeRange.model_validate({"since": "2026-03-02T00:00:00Z", "until": "2026-03-01T00:00:00Z"})


@pytest.mark.parametrize("days", [True, "30", 30.5, 0, 3651])
def test_retention_days_are_a_whole_number_in_range(days) -> None:
    with pytest.raises(ValidationError):
        RetentionUpdate.model_validate({"days": days})


def test_retention_days_may_be_written_as_a_whole_float() -> None:
    assert RetentionUpdate.model_validate({"days": 30.0}).days == 30


@pytest.mark.parametrize("field", ["contact", "type"])
def test_search_text_cannot_hold_nul(field) -> None:
    with pytest.raises(ValidationError):
        MessageSearch.model_validate({field: "a\x00b"})
