"""The worker process: NPC and coherence workflows and their activities on the `aiworld` task queue."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as redis
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities.coherence_activities import CoherenceActivities
from activities.npc_activities import DecisionMaker, NpcActivities
from aiworld.config import CoherenceSettings, Settings
from aiworld.memory.store import MemoryStore
from aiworld.models import NpcProfile
from aiworld.store.action_queue import ActionQueue
from aiworld.store.keys import Keys
from aiworld.temporal import connect, ensure_search_attributes
from aiworld.world.coherence import CoherenceMonitor, apply_coherence_schedule
from aiworld.world.definition import load_world
from workflows.coherence import CoherenceCheckWorkflow
from workflows.npc_life import NpcLifeWorkflow

log = logging.getLogger(__name__)

WORKFLOWS = [NpcLifeWorkflow, CoherenceCheckWorkflow]
STORE_SOCKET_TIMEOUT = 2.0


def build_worker(
    client: Client,
    task_queue: str,
    store: redis.Redis,
    keys: Keys,
    brain: DecisionMaker,
    *,
    coherence: CoherenceSettings | None = None,
    known_profiles: list[NpcProfile] | None = None,
    **options: Any,
) -> Worker:
    """`options` go to the Worker as they are (cache size, concurrency). The coherence monitor
    restarts NPCs from `known_profiles` (the world file's; the demo world's by default)."""
    activities = NpcActivities(MemoryStore(store, keys), ActionQueue(store, keys), brain)
    profiles = known_profiles if known_profiles is not None else load_world().npcs
    monitor = CoherenceMonitor(client, store, keys, task_queue, coherence or CoherenceSettings(), profiles)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[*activities.all(), *CoherenceActivities(monitor).all()],
        **options,
    )


@asynccontextmanager
async def running_worker(settings: Settings, client: Client | None = None) -> AsyncIterator[Worker]:
    """A worker wired from settings: Temporal, the state store and the LLM router."""
    from aiworld.llm import build_router  # the LLM layer pulls in every provider SDK; load it once here

    client = client or await connect(settings)
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
    worker = build_worker(
        client,
        settings.task_queue,
        store,
        keys,
        router,
        coherence=settings.coherence,
        known_profiles=load_world(settings.world_file).npcs,
    )
    if settings.coherence.schedule_enabled:
        try:
            how = await apply_coherence_schedule(client, settings.coherence, settings.task_queue)
            log.info("schedule world-coherence %s", how)
        except RPCError as error:  # a server without schedules: NPCs live on, unwatched
            log.warning("schedule world-coherence not applied (%s); run `aiworld schedules apply` later", error.message)
    try:
        async with worker:
            yield worker
    finally:
        await router.aclose()
        await store.aclose()


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    async with running_worker(settings):
        log.info("worker polling task queue %s at %s", settings.task_queue, settings.temporal_address)
        await stop.wait()
