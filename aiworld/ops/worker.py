"""The worker process: NPC lives, world cycles, the event coordinator and the coherence monitor, with their
activities, on the `aiworld` task queue."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import redis.asyncio as redis
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError
from temporalio.worker import PollerBehaviorAutoscaling, UnsandboxedWorkflowRunner, Worker

from activities.broadcast_activities import BroadcastActivities
from activities.coherence_activities import CoherenceActivities
from activities.memory_activities import MemoryActivities
from activities.npc_activities import DecisionMaker, NpcActivities
from activities.world_activities import WorldActivities
from aiworld.config import (
    CoherenceSettings,
    ConfigError,
    CoordinatorSettings,
    MemorySettings,
    ObservabilitySettings,
    Settings,
)
from aiworld.memory.embeddings import Embedder
from aiworld.memory.memori import MemoriBackend, MemoriStore, MemoriUnavailable
from aiworld.memory.store import MemoryStore
from aiworld.models import NpcProfile
from aiworld.npc.priority import PriorityGate
from aiworld.ops.collector import collect_fully_every, freeze_and_defer_full_collections
from aiworld.ops.metrics import WorkerMetrics
from aiworld.ops.tracing import configure_tracing
from aiworld.store.action_queue import ActionQueue
from aiworld.store.keys import Keys
from aiworld.temporal import connect, ensure_search_attributes
from aiworld.world.coherence import CoherenceMonitor, apply_coherence_schedule
from aiworld.world.definition import load_world
from aiworld.world.directory import NpcDirectory
from aiworld.world.feed import WorldFeed
from aiworld.world.schedules import apply_schedules
from aiworld.world.store import WorldStore
from aiworld.world.words import OfflineNarrator, WorldNarrator
from workflows.coherence import CoherenceCheckWorkflow
from workflows.npc_life import NpcLifeWorkflow
from workflows.world_broadcast import WorldBroadcastWorkflow
from workflows.world_cycles import CYCLE_WORKFLOWS

log = logging.getLogger(__name__)

WORKFLOWS = [NpcLifeWorkflow, WorldBroadcastWorkflow, CoherenceCheckWorkflow, *CYCLE_WORKFLOWS.values()]
STORE_SOCKET_TIMEOUT = 2.0


def build_worker(
    client: Client,
    task_queue: str,
    store: redis.Redis,
    keys: Keys,
    brain: DecisionMaker,
    coordinator: CoordinatorSettings | None = None,
    memory: MemorySettings | None = None,
    metrics: WorkerMetrics | None = None,
    *,
    coherence: CoherenceSettings | None = None,
    known_profiles: list[NpcProfile] | None = None,
    memori: MemoriBackend | None = None,
    gate: PriorityGate | None = None,
    **options: Any,
) -> Worker:
    """`options` go to the Worker as they are (cache size, concurrency). The coherence monitor
    restarts NPCs from `known_profiles` (the world file's; the demo world's by default). With
    `memori` (an open MemoriBackend), NPCs remember and recall through Memori. `gate` orders the
    NPCs' background turns behind players' lines (none: no limit)."""
    metrics = metrics or WorkerMetrics()  # one registry for every activity of this worker
    memories = memory_store(store, keys, brain, memory or MemorySettings(), memori)
    actions = ActionQueue(store, keys)
    narrator = brain if isinstance(brain, WorldNarrator) else OfflineNarrator()
    profiles = known_profiles if known_profiles is not None else load_world().npcs
    monitor = CoherenceMonitor(client, store, keys, task_queue, coherence or CoherenceSettings(), profiles)
    activities = [
        *NpcActivities(memories, actions, brain, WorldFeed(store, keys), metrics, gate).all(),
        *MemoryActivities(memories, brain).all(),
        *WorldActivities(WorldStore(store, keys), memories, actions, narrator).all(),
        *BroadcastActivities(client, NpcDirectory(store, keys), coordinator or CoordinatorSettings(), metrics).all(),
        *CoherenceActivities(monitor).all(),
    ]
    return Worker(client, task_queue=task_queue, workflows=WORKFLOWS, activities=activities, **options)


def memory_store(
    store: redis.Redis, keys: Keys, brain: DecisionMaker, settings: MemorySettings, memori: MemoriBackend | None = None
) -> MemoryStore:
    """Memori's store when a Memori backend is given (it embeds with its own model); else the
    built-in one, embedded by the LLM chain when a provider is configured (and wanted), or locally."""
    if memori is not None:
        return MemoriStore(store, keys, settings, memori)
    remote = settings.embeddings == "provider" and not brain.decides_locally("routine")
    provider = getattr(brain, "embed", None) if remote else None
    embed = functools.partial(provider, local_fallback=False) if provider else None
    embedder = Embedder(
        store,
        keys,
        embed,
        cache_ttl_seconds=settings.embedding_cache_ttl_seconds,
        dimensions=settings.local_embedding_dimensions,
    )
    return MemoryStore(store, keys, settings, embedder)


def sdk_metrics_runtime(settings: ObservabilitySettings) -> Runtime | None:
    """A Temporal runtime whose core serves the SDK's metrics for Prometheus, named its way
    (`_total` on counters, durations in `_seconds`); None when no port is configured."""
    if settings.temporal_metrics_port is None:
        return None
    prometheus = PrometheusConfig(
        bind_address=f"{settings.metrics_host}:{settings.temporal_metrics_port}",
        counters_total_suffix=True,
        unit_suffix=True,
        durations_as_seconds=True,
    )
    return Runtime(telemetry=TelemetryConfig(metrics=prometheus))


@asynccontextmanager
async def running_worker(settings: Settings, client: Client | None = None) -> AsyncIterator[Worker]:
    """A worker wired from settings: Temporal, the state store, the LLM router and, with
    `memory.backend: memori`, Memori (refused with the reason when it cannot serve)."""
    async with AsyncExitStack() as backends:
        memori = None
        if settings.memory.backend == "memori":
            try:
                memori = await MemoriBackend.open(settings.memory)
            except MemoriUnavailable as error:
                raise ConfigError(f"AIWORLD_MEMORY__BACKEND=memori cannot serve: {error}") from None
            backends.push_async_callback(memori.close)
            log.info("memory backend memori: model %s, tables at %s", memori.model, memori.database)
        async with _running_worker(settings, client, memori) as worker:
            yield worker


@asynccontextmanager
async def _running_worker(
    settings: Settings, client: Client | None, memori: MemoriBackend | None
) -> AsyncIterator[Worker]:
    from aiworld.llm import build_router  # the LLM layer pulls in every provider SDK; load it once here

    configure_tracing(settings.observability, "worker")
    client = client or await connect(settings, sdk_metrics_runtime(settings.observability))
    # A plain `temporal server start-dev` or a new namespace lacks them, and every NPC start
    # would be refused: create what is missing before polling.
    await ensure_search_attributes(client)
    # A store that hangs (frozen, partitioned) must fail calls, not hold activities until their
    # timeouts: the NPC then decides without it and keeps its writes for later.
    store = redis.Redis.from_url(
        settings.redis_url, socket_timeout=STORE_SOCKET_TIMEOUT, socket_connect_timeout=STORE_SOCKET_TIMEOUT
    )
    keys = Keys(settings.redis_key_prefix)
    router = build_router(settings, store, keys)
    metrics = WorkerMetrics()
    worker = build_worker(
        client,
        settings.task_queue,
        store,
        keys,
        router,
        coordinator=settings.coordinator,
        memory=settings.memory,
        metrics=metrics,
        coherence=settings.coherence,
        known_profiles=load_world(settings.world_file).npcs,
        memori=memori,
        gate=PriorityGate(settings.worker.background_slots, settings.worker.background_max_wait_seconds),
        max_cached_workflows=settings.worker.max_cached_workflows,
        max_concurrent_workflow_tasks=settings.worker.max_concurrent_workflow_tasks,
        max_concurrent_local_activities=settings.worker.max_concurrent_local_activities,
        **(
            {
                "workflow_task_poller_behavior": PollerBehaviorAutoscaling(
                    maximum=settings.worker.max_workflow_task_polls
                )
            }
            if settings.worker.max_workflow_task_polls
            else {}
        ),
        **({} if settings.worker.workflow_sandbox else {"workflow_runner": UnsandboxedWorkflowRunner()}),
    )
    if settings.world.schedules_enabled:
        try:
            applied = await apply_schedules(client, settings.world, settings.task_queue)
        except RPCError as error:  # e.g. a server without schedules: NPCs live on, the world stands still
            log.warning("world schedules not applied (%s); run `aiworld schedules apply` later", error.message)
        else:
            log.info("world schedules: %s", ", ".join(f"{sid} {how}" for sid, how in applied.items()))
    if settings.coherence.schedule_enabled:
        try:
            how = await apply_coherence_schedule(client, settings.coherence, settings.task_queue)
            log.info("schedule world-coherence %s", how)
        except RPCError as error:  # a server without schedules: NPCs live on, unwatched
            log.warning("schedule world-coherence not applied (%s); run `aiworld schedules apply` later", error.message)
    observability = settings.observability
    try:
        async with AsyncExitStack() as serving:
            if observability.worker_metrics_port is not None:
                await serving.enter_async_context(
                    metrics.served(observability.metrics_host, observability.worker_metrics_port, store, keys)
                )
            async with worker:
                yield worker
    finally:
        await router.aclose()
        await store.aclose()


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """The worker process (`aiworld worker`), its full garbage collections on a schedule when the
    settings say so (aiworld/ops/collector.py)."""
    stop = stop or asyncio.Event()
    async with running_worker(settings), asyncio.TaskGroup() as tasks:
        log.info("worker polling task queue %s at %s", settings.task_queue, settings.temporal_address)
        interval = settings.worker.full_gc_interval_seconds
        collector = None
        if interval:
            freeze_and_defer_full_collections()
            collector = tasks.create_task(collect_fully_every(interval))
        await stop.wait()
        if collector is not None:
            collector.cancel()
