"""OpenTelemetry tracing; trace context rides in the event envelope and in Kafka headers."""

from __future__ import annotations

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span


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


def trace_context_of(span: Span) -> dict[str, str]:
    """W3C `traceparent`/`tracestate` of `span`, without making it the current span: on a hot
    path, attaching and detaching the context and running the propagators cost more than the span."""
    context = span.get_span_context()
    if not context.is_valid:
        return {}
    carrier = {"traceparent": f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"}
    if context.trace_state:
        carrier["tracestate"] = context.trace_state.to_header()
    return carrier
