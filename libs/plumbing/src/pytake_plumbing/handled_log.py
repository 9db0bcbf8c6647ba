"""The consumer runtime's per-event `event_handled` log lines, written one batch at a time.

Every handled event gets its JSON line with its correlation id. At thousands of events a second,
going through the logging stack line by line (a LogRecord, a caller lookup, the processor chain
and a flush each) cost more than writing the events to MongoDB (the audit), so these lines are
rendered here, with the same fields, and written in one go."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

import structlog

from pytake_contracts import Event

from .record_source import Record

LOGGER = "pytake_plumbing.consumer"


def lines(handled: Sequence[tuple[Record, Event]], now: datetime) -> list[str]:
    common = {"event": "event_handled", **structlog.contextvars.get_contextvars(), "level": "info",
              "logger": LOGGER, "timestamp": now.isoformat().replace("+00:00", "Z")}
    return [json.dumps({"topic": record.topic, "partition": record.partition, "offset": record.offset,
                        "correlation_id": event.correlation_id, "event_id": str(event.event_id),
                        "event_type": event.event_type,
                        "organization_id": str(event.organization_id) if event.organization_id else None,
                        **common})
            for record, event in handled]


def write(handled: Sequence[tuple[Record, Event]]) -> None:
    if not handled or not logging.getLogger(LOGGER).isEnabledFor(logging.INFO):
        return
    try:
        sys.stdout.write("\n".join(lines(handled, datetime.now(UTC))) + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):  # as the logging module does: a lost log line never fails the batch
        pass
