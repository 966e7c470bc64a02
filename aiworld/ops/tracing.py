"""OpenTelemetry traces: one trace from the bridge's HTTP call through the API, the signal or update,
the NPC workflow and its activities.

Temporal's OpenTelemetry interceptor (`temporalio.contrib.opentelemetry`) rides on every client we
connect, and workers take it from their client; FastAPI's and httpx's instrumentations carry the
context over HTTP. We use the interceptor that opens a workflow's handler spans in the caller's
context (the older TracingInterceptor opens them in the workflow's own trace and only links the
caller), so an update's activities sit in the trace of the HTTP call that sent it. It needs the
process's tracer provider to be Temporal's replay-safe one (span ids and times from the workflow,
never duplicated on replay).

Tracing is on when `AIWORLD_OBSERVABILITY__OTLP_ENDPOINT` is set (spans leave over OTLP/HTTP);
otherwise nothing is instrumented at all, so an untraced deployment pays nothing for it.
"""

from __future__ import annotations

import logging

import httpx
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from temporalio.contrib.opentelemetry import OpenTelemetryInterceptor, ReplaySafeTracerProvider, create_tracer_provider

from aiworld.config import ConfigError, ObservabilitySettings

log = logging.getLogger(__name__)


def span_exporter(settings: ObservabilitySettings) -> SpanExporter | None:
    """OTLP over HTTP to the configured endpoint; None when no endpoint is configured."""
    if not settings.otlp_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=settings.otlp_endpoint)


def configure_tracing(settings: ObservabilitySettings, process: str) -> ReplaySafeTracerProvider | None:
    """The process's replay-safe tracer provider exporting over OTLP, installed once; None when off."""
    exporter = span_exporter(settings)
    if exporter is None:
        return None
    current = trace.get_tracer_provider()
    if isinstance(current, ReplaySafeTracerProvider):
        return current
    provider = create_tracer_provider(
        resource=Resource.create({"service.name": f"{settings.service_name_prefix}-{process}"})
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    log.info("exporting traces of %s to %s", process, settings.otlp_endpoint)
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:
        raise ConfigError("another OpenTelemetry tracer provider was installed in this process before ours")
    return provider


def temporal_interceptors(settings: ObservabilitySettings) -> list[OpenTelemetryInterceptor]:
    """For a Temporal client (and the workers built on it): spans of starts, signals, updates,
    workflows and activities, when tracing is on."""
    return [OpenTelemetryInterceptor(add_temporal_spans=True)] if settings.otlp_endpoint else []


def instrument_api(app: FastAPI, settings: ObservabilitySettings) -> None:
    if settings.otlp_endpoint:
        FastAPIInstrumentor.instrument_app(app, excluded_urls="health,ready,metrics")


def instrument_http_client(client: httpx.AsyncClient, settings: ObservabilitySettings) -> None:
    if settings.otlp_endpoint:
        HTTPXClientInstrumentor.instrument_client(client)
