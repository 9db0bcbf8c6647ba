"""OpenTelemetry tracing; trace context rides in Kafka headers via FastStream's middleware."""

from __future__ import annotations

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider


def configure_tracing(service: str) -> TracerProvider:
    # Spans are created and propagated; exporting them is an operator's choice
    # (an OTLP exporter can be added to this provider without code changes elsewhere).
    provider = TracerProvider(resource=Resource.create({"service.name": f"pytake-{service}"}))
    trace.set_tracer_provider(provider)
    return provider


def current_trace_context() -> dict[str, str]:
    """W3C `traceparent`/`tracestate` of the current span, for the event envelope."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier
