"""OpenTelemetry traces: one trace from the bridge's HTTP call through the API, the signal or update,
the NPC workflow and its activities.

Temporal's TracingInterceptor rides on every client we connect (workers take it from their client),
FastAPI's and httpx's instrumentations carry the context over HTTP. Spans go to the tracer provider
that is global in the process: with `AIWORLD_OBSERVABILITY__OTLP_ENDPOINT` set, one that exports
over OTLP/HTTP; otherwise OpenTelemetry's no-op provider, so tracing costs next to nothing.
"""

from __future__ import annotations

import logging

import httpx
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from temporalio.contrib.opentelemetry import TracingInterceptor

from aiworld.config import ObservabilitySettings

log = logging.getLogger(__name__)


def configure_tracing(settings: ObservabilitySettings, process: str) -> TracerProvider | None:
    """Export this process's spans over OTLP when an endpoint is configured; None when off."""
    if not settings.otlp_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": f"{settings.service_name_prefix}-{process}"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
    trace.set_tracer_provider(provider)
    log.info("exporting traces of %s to %s", process, settings.otlp_endpoint)
    return provider


def temporal_interceptors() -> list[TracingInterceptor]:
    """For every Temporal client: spans of starts, signals, updates, workflows and activities."""
    return [TracingInterceptor()]


def instrument_api(app: FastAPI) -> None:
    FastAPIInstrumentor.instrument_app(app, excluded_urls="health,ready,metrics")


def instrument_http_client(client: httpx.AsyncClient) -> None:
    HTTPXClientInstrumentor.instrument_client(client)
