"""Prometheus metrics of one gateway process, in a registry of its own (one per app instance)."""

from __future__ import annotations

from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class RenderedMetrics(Protocol):
    def render(self) -> bytes: ...


class GatewayMetrics:
    """The front door: webhooks answered, stored and ignored."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.webhooks = Counter(
            "pytake_gateway_webhooks", "Webhook POSTs by HTTP status answered", ["status"], registry=self.registry)
        self.stored = Counter(
            "pytake_gateway_webhooks_stored", "Intake records acknowledged by Kafka (one per business number "
            "in a webhook)", registry=self.registry)
        self.ignored = Counter(
            "pytake_gateway_ignored", "Signed payload parts ignored (unknown object, field, ...)", ["reason"],
            registry=self.registry)
        self.rate_limited = Counter(
            "pytake_gateway_rate_limited", "Requests refused with 429", registry=self.registry)
        self.ack_seconds = Histogram(
            "pytake_gateway_ack_seconds", "Time from request to answer of webhook POSTs",
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0), registry=self.registry)

        self._by_status: dict[int, Counter] = {}

    def answered(self, status: int, seconds: float) -> None:
        """One webhook POST answered (label children are kept: this runs for every delivery)."""
        counter = self._by_status.get(status)
        if counter is None:
            counter = self._by_status[status] = self.webhooks.labels(str(status))
        counter.inc()
        self.ack_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ForwarderMetrics:
    """Behind the intake: events passed downstream, redeliveries held back."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events_forwarded = Counter(
            "pytake_gateway_events_forwarded", "Events acknowledged by Kafka on the inbound topic, by event type",
            ["event_type"], registry=self.registry)
        self.duplicates = Counter(
            "pytake_gateway_duplicates", "Redelivered messages and statuses not forwarded again", ["kind"],
            registry=self.registry)
        self.ignored = Counter(
            "pytake_gateway_forwarder_ignored", "Parts of stored webhooks not turned into events (invalid value, ...)",
            ["reason"], registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
