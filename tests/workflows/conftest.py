"""An NPC worker on the real Temporal of the test, with the real activities on the real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import pytest_asyncio
from temporalio.client import Client, WorkflowHandle

from aiworld.keys import Keys
from aiworld.offline_policy import OfflineDecisionMaker
from aiworld.models import DecisionRecord, NpcProfile, NpcStateView
from aiworld.npc_control import ensure_npc_started
from aiworld.temporal import npc_workflow_id
from aiworld.world import load_world
from aiworld.worker import build_worker
from workflows.npc_state import NpcLifeInput


def demo_profile(npc_id: str = "lina_baker", **changes) -> NpcProfile:
    """A demo-world NPC, optionally changed (importance, id …) for one test."""
    base = next(npc for npc in load_world().npcs if npc.npc_id == npc_id)
    return NpcProfile.model_validate(base.model_dump() | changes)


@dataclass
class NpcLife:
    client: Client
    task_queue: str
    keys: Keys

    async def start(self, profile: NpcProfile, history_length_limit: int | None = None) -> WorkflowHandle:
        if history_length_limit is None:
            await ensure_npc_started(self.client, profile, self.task_queue)
        else:
            await self.client.start_workflow(
                "NpcLifeWorkflow",
                NpcLifeInput(profile=profile, history_length_limit=history_length_limit),
                id=npc_workflow_id(profile.npc_id),
                task_queue=self.task_queue,
            )
        return self.client.get_workflow_handle(npc_workflow_id(profile.npc_id))

    async def state(self, handle: WorkflowHandle) -> NpcStateView:
        return await handle.query("state", result_type=NpcStateView)

    async def wait_for(self, handle: WorkflowHandle, predicate: Callable[[NpcStateView], bool], timeout: float = 60) -> NpcStateView:
        """Poll the `state` query until the NPC reaches the expected situation."""
        async with asyncio.timeout(timeout):
            while True:
                state = await self.state(handle)
                if predicate(state):
                    return state
                await asyncio.sleep(0.1)

    async def wait_for_decisions(
        self, handle: WorkflowHandle, predicate: Callable[[list[DecisionRecord]], bool], timeout: float = 60
    ) -> list[DecisionRecord]:
        async with asyncio.timeout(timeout):
            while True:
                decisions = await handle.query("recent_decisions", result_type=list[DecisionRecord])
                if predicate(decisions):
                    return decisions
                await asyncio.sleep(0.1)


async def _running_life(client: Client, task_queue: str, redis_client, keys: Keys):
    # The offline policy: what the demo world runs on when no LLM is configured.
    router = OfflineDecisionMaker()
    worker = build_worker(client, task_queue, redis_client, keys, router)
    async with worker:
        yield NpcLife(client, task_queue, keys)
    await router.aclose()


@pytest_asyncio.fixture(loop_scope="session")
async def life(time_skipping_env, task_queue, redis_client, keys):
    async for running in _running_life(time_skipping_env.client, task_queue, redis_client, keys):
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def dev_life(dev_env, task_queue, redis_client, keys):
    async for running in _running_life(dev_env.client, task_queue, redis_client, keys):
        yield running
