"""Reads a PyTake topic and prints each record as a typed event.

    pip install 'pytake-contracts[kafka]'
    python -m pytake_contracts.example_consumer --bootstrap 127.0.0.1:19092 \\
        --topic pytake.messages.routed --group analytics-demo --from-beginning

A record this release of the contracts does not know (a newer schema_version, say)
is reported and skipped, never fatal: upgrade the package to read it.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid

from pydantic import ValidationError

from . import UnknownEventError, decode_event


def consume(bootstrap: str, topics: list[str], group: str | None, from_beginning: bool,
            max_events: int | None, idle_timeout_s: float | None) -> int:
    try:
        from confluent_kafka import Consumer
    except ImportError:  # the contracts themselves need no Kafka client
        print("this example needs confluent-kafka: pip install 'pytake-contracts[kafka]'", file=sys.stderr)
        return 2
    # Without a group of its own, a throwaway one that commits nothing.
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group or f"example-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest" if from_beginning else "latest",
                         "enable.auto.commit": group is not None})
    consumer.subscribe(topics)
    seen, idle_since = 0, time.monotonic()
    try:
        while max_events is None or seen < max_events:
            record = consumer.poll(1.0)
            if record is None:
                if idle_timeout_s is not None and time.monotonic() - idle_since >= idle_timeout_s:
                    break
                continue
            idle_since = time.monotonic()
            if record.error() is not None:
                print(f"kafka: {record.error()}", file=sys.stderr)
                continue
            try:
                event = decode_event(record.value() or b"")
            except (UnknownEventError, ValidationError, ValueError) as exc:
                print(f"skipped {record.topic()}@{record.partition()}:{record.offset()}: {exc}", file=sys.stderr)
                continue
            seen += 1
            tenant = event.organization_id or "-"
            print(f"{event.occurred_at.isoformat()} {event.event_type} v{event.schema_version} "
                  f"org={tenant} correlation={event.correlation_id} {type(event).__name__}", flush=True)
    finally:
        consumer.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pytake-example-consumer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", action="append", required=True, help="repeat for several topics")
    parser.add_argument("--group", default=None, help="consumer group (offsets are committed when set)")
    parser.add_argument("--from-beginning", action="store_true")
    parser.add_argument("--max-events", type=int, default=None)
    parser.add_argument("--idle-timeout", type=float, default=None, help="stop after this many idle seconds")
    args = parser.parse_args(argv)
    return consume(args.bootstrap, args.topic, args.group, args.from_beginning, args.max_events,
                   args.idle_timeout)


if __name__ == "__main__":
    raise SystemExit(main())
