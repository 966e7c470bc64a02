"""One trace from the bridge's HTTP call through the API, the update, the NPC workflow and its
activities: the real bridge client, the API under uvicorn, a worker, all on clients connected the
way every process connects, spans caught by an in-memory exporter."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import pytest_asyncio
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from temporalio.contrib.opentelemetry import ReplaySafeTracerProvider

from aiworld.config import ObservabilitySettings
from aiworld.models import PlayerRef, TalkTurn
from aiworld.npc.control import ensure_npc_started
from aiworld.npc.offline_policy import OfflineDecisionMaker
from aiworld.ops.tracing import configure_tracing, span_exporter, temporal_interceptors
from aiworld.ops.worker import build_worker
from aiworld.temporal import connect, npc_workflow_id
from api.app import create_app
from bridge.api_client import ApiClient
from tests.api.conftest import API_KEYS, api_settings, served
from tests.conftest import demo_profile, end_lives

pytestmark = pytest.mark.dev_server

EXPORTER = InMemorySpanExporter()


def traced(otlp_endpoint: str) -> ObservabilitySettings:
    """Tracing on, as a deployment turns it on, with this module's exporter on the process's provider."""
    settings = ObservabilitySettings(otlp_endpoint=otlp_endpoint)
    provider = configure_tracing(settings, "test")
    assert provider is not None
    if not getattr(provider, "_aiworld_test_exporter", False):
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        provider._aiworld_test_exporter = True  # type: ignore[attr-defined]
    EXPORTER.clear()
    return settings


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def session_collector() -> AsyncIterator[tuple[str, list[bytes]]]:
    """Lives as long as the process's tracer provider that exports to it: the provider is shut
    down (what is left flushed) before the collector stops, so nothing is sent to a closed port."""
    async with collector() as running:
        yield running
        provider = trace.get_tracer_provider()
        if isinstance(provider, ReplaySafeTracerProvider):
            await asyncio.to_thread(provider.shutdown)


@asynccontextmanager
async def collector() -> AsyncIterator[tuple[str, list[bytes]]]:
    """An OTLP/HTTP trace collector: what it receives, as protobuf bodies. Plain Starlette: an
    instrumented FastAPI app would trace its own receiving, and export that, endlessly."""
    received: list[bytes] = []

    async def traces(request: Request) -> Response:
        received.append(await request.body())
        return Response(status_code=200)

    async with served(Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])) as url:
        yield f"{url}/v1/traces", received


def exported_span_names(bodies: list[bytes]) -> set[str]:
    names = set()
    for body in bodies:
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                names.update(span.name for span in scope.spans)
    return names


def lineage(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    names = []
    while span is not None:
        names.append(span.name)
        parent = span.parent
        span = by_id.get(parent.span_id) if parent is not None else None
    return names


async def test_a_bridge_call_is_one_trace_through_the_api_the_update_the_workflow_and_its_activities(
    dev_env, task_queue, redis_client, keys, session_collector
):
    endpoint, received = session_collector
    observability = traced(endpoint)
    settings = api_settings(keys, task_queue).model_copy(
        update={
            "temporal_address": dev_env.client.service_client.config.target_host,
            "observability": observability,
        }
    )
    client = await connect(settings)  # as every process connects: with the tracing interceptor
    app = create_app(settings, client=client, store=redis_client)
    async with build_worker(client, task_queue, redis_client, keys, OfflineDecisionMaker()):
        await ensure_npc_started(client, demo_profile("lina_baker"), task_queue)
        async with served(app) as url:
            bridge = ApiClient(url, API_KEYS[0], observability=observability)
            try:
                reply = await bridge.talk(
                    "lina_baker",
                    TalkTurn(turn_id="traced-1", player=PlayerRef(char_id=150001, name="Aria"), text="Hi"),
                )
            finally:
                await bridge.aclose()
    await end_lives(client, task_queue, {npc_workflow_id("lina_baker")}, visibility=False)
    # The exporter posts synchronously to the collector that runs on this event loop: from a thread.
    await asyncio.to_thread(trace.get_tracer_provider().force_flush)  # type: ignore[attr-defined]
    assert reply.text

    spans = EXPORTER.get_finished_spans()
    by_id = {span.context.span_id: span for span in spans}
    talk_call = next(
        span
        for span in spans
        if span.kind is trace.SpanKind.CLIENT
        and str(span.attributes.get("http.url")).endswith("/ai/player/interaction")
    )
    in_trace = [span for span in spans if span.context.trace_id == talk_call.context.trace_id]
    names = {span.name for span in in_trace}
    assert "POST /ai/player/interaction" in names, names  # the API's server span
    assert "StartWorkflowUpdate:talk" in names, names
    assert {"ValidateUpdate:talk", "HandleUpdate:talk"} & names, names
    # The offline policy answers and the turn is written in one local activity (decide-and-save).
    replied = next(span for span in in_trace if span.name == "RunActivity:reply_and_save")
    chain = lineage(replied, by_id)
    assert chain[-1] == talk_call.name, chain  # rooted in the bridge's HTTP call
    assert "POST /ai/player/interaction" in chain and "StartWorkflowUpdate:talk" in chain, chain
    assert {"POST /ai/player/interaction", "HandleUpdate:talk", "RunActivity:reply_and_save"} <= exported_span_names(
        received
    ), "and they left over OTLP"


def test_without_an_endpoint_nothing_is_traced():
    off = ObservabilitySettings()
    assert span_exporter(off) is None and configure_tracing(off, "worker") is None
    assert temporal_interceptors(off) == []


async def test_with_an_endpoint_spans_leave_over_otlp_http():
    """The configured exporter, on a provider of its own, posts OTLP protobuf to the endpoint."""
    async with collector() as (endpoint, received):
        exporter = span_exporter(ObservabilitySettings(otlp_endpoint=endpoint))
        assert exporter is not None
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        await asyncio.to_thread(lambda: provider.get_tracer("test").start_span("decide").end())
        provider.shutdown()
    assert exported_span_names(received) == {"decide"}
