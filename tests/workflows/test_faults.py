"""No fault outside the workflow's own code fails an NPC: each fallback branch taken with a real fault.

The state store is a Redis of the test's own, killed with -9 or frozen with SIGSTOP; the LLM layer
is the real router, whose caches live in that store; corrupt records are written into the store.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest_asyncio
import redis.asyncio as redis
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.memory_activities import MemoryActivities
from activities.npc_activities import (
    DecidedAndSaved,
    DecisionPlan,
    NpcActivities,
    RepliedAndSaved,
    ReplyPlan,
    ReplyResult,
)
from aiworld.config import LlmSettings, ProviderSettings, Settings
from aiworld.llm import build_router
from aiworld.memory.store import MemoryStore
from aiworld.models import (
    DecisionResult,
    DialogueContext,
    GameEvent,
    NpcContext,
    NpcStateView,
    PlayerRef,
    TalkReply,
    TalkTurn,
)
from aiworld.npc.offline_policy import OfflineDecisionMaker
from aiworld.ops.worker import STORE_SOCKET_TIMEOUT, WORKFLOWS, build_worker
from aiworld.store.action_queue import ActionQueue
from aiworld.world.feed import WorldFeed
from tests.conftest import NpcLife, demo_profile, end_lives
from tests.processes import ServerProcess, redis_process

PROBE = PlayerRef(char_id=150077, name="Probe", level=12, job_class=1, map="prontera", x=150, y=180)


@pytest_asyncio.fixture(loop_scope="session")
async def own_redis(tmp_path) -> ServerProcess:
    server = redis_process(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def store_of(server: ServerProcess) -> redis.Redis:
    # The worker's own settings: a dead or frozen store fails calls quickly instead of hanging.
    return redis.Redis(
        port=server.port, socket_timeout=STORE_SOCKET_TIMEOUT, socket_connect_timeout=STORE_SOCKET_TIMEOUT
    )


def llm_router(store: redis.Redis, keys):
    """The real LLM router with one provider: its prompt and decision caches live in the store,
    so with the store gone every decision and reply activity fails for good."""
    settings = Settings(
        llm=LlmSettings(
            default_provider="openai",
            providers={
                "openai": ProviderSettings(kind="openai", endpoint="http://127.0.0.1:9/v1", api_key="k", model="m")
            },
        )
    )
    return build_router(settings, store, keys)


async def state_when(env, handle: WorkflowHandle, predicate, timeout: float = 120) -> NpcStateView:
    """Query until the predicate holds, moving the test server's clock on so that the NPC's
    timers (its cadence, the store retry backoff) fire without real waiting."""
    async with asyncio.timeout(timeout):
        while True:
            state = await handle.query("state", result_type=NpcStateView)
            if predicate(state):
                return state
            await env.sleep(timedelta(seconds=5))


async def assert_running(handle: WorkflowHandle) -> None:
    described = await handle.describe()
    assert described.status == WorkflowExecutionStatus.RUNNING, f"{handle.id} is {described.status}"


async def test_a_killed_store_delays_what_the_npc_writes_and_kills_nothing(
    time_skipping_env, task_queue, keys, own_redis
):
    store = store_of(own_redis)
    router = llm_router(store, keys)
    life = NpcLife(time_skipping_env.client, task_queue, keys)
    profile = demo_profile("lina_baker", importance=4)
    try:
        async with build_worker(time_skipping_env.client, task_queue, store, keys, router):
            handle = await life.start(profile)
            own_redis.kill()

            # Context, decision (its caches are in the store) and writes all fail for good.
            await handle.signal("game_event", GameEvent(event_id="attack-1", kind="player_attacked", player=PROBE))
            reply = await handle.execute_update(
                "talk", TalkTurn(turn_id="t1", player=PROBE, text="Hello? Anyone?"), result_type=TalkReply
            )
            assert reply.decided_by == "offline" and reply.text
            waiting = await state_when(
                time_skipping_env, handle, lambda s: s.events_processed == 1 and s.unsaved_writes >= 2
            )
            assert waiting.fallbacks >= 3  # the decision's context and decision, the reply's context
            # The branch that once crashed every NPC: a decision that fails for good becomes a
            # routine step, recorded as such.
            decisions = await handle.query("recent_decisions")
            assert "routine-after-failure" in [decision["trigger"] for decision in decisions]
            await handle.signal("game_event", GameEvent(event_id="attack-2", kind="player_attacked", player=PROBE))
            held = await state_when(time_skipping_env, handle, lambda s: s.pending_events == 1)
            assert held.events_processed == 1, "events wait while earlier writes are unsaved"
            await assert_running(handle)

            own_redis.start()
            done = await state_when(
                time_skipping_env,
                handle,
                lambda s: s.unsaved_writes == 0 and s.events_processed == 2 and s.pending_events == 0,
            )
            assert done.runs == 1
            # The second attack is decided on and written once its turn comes.
            async with asyncio.timeout(60):
                while "attack-2" not in [
                    event_id
                    for decision in await handle.query("recent_decisions")
                    for event_id in decision["event_ids"]
                ]:
                    await time_skipping_env.sleep(timedelta(seconds=1))
            await assert_running(handle)

            memories = {
                memory_id.decode() for memory_id in await store.zrange(keys.memory_index(profile.npc_id), 0, -1)
            }
            assert {mid for mid in memories if mid.endswith("-heard")}, "the talk turn is remembered"
            assert len([mid for mid in memories if "-event-" in mid]) == 2, "each attack remembered once"
            queued = {action.action_id for action in await ActionQueue(store, keys).pending(profile.npc_id)}
            assert f"{profile.npc_id}-talk-t1" in queued, "the reply promised to a late caller is queued"
    finally:
        await life_end(life)
        await router.aclose()
        await store.aclose()


async def test_a_frozen_store_does_not_hold_a_player_waiting(time_skipping_env, task_queue, keys, own_redis):
    store = store_of(own_redis)
    life = NpcLife(time_skipping_env.client, task_queue, keys)
    profile = demo_profile("lina_baker")
    try:
        async with build_worker(time_skipping_env.client, task_queue, store, keys, OfflineDecisionMaker()):
            handle = await life.start(profile)
            own_redis.freeze()
            reply = await handle.execute_update(
                "talk", TalkTurn(turn_id="frozen-1", player=PROBE, text="Bread, please"), result_type=TalkReply
            )
            assert reply.text
            await state_when(time_skipping_env, handle, lambda s: s.unsaved_writes == 1)
            # Known to be down now: the next turn does not wait on the store at all.
            await handle.execute_update(
                "talk", TalkTurn(turn_id="frozen-2", player=PROBE, text="Hello?"), result_type=TalkReply
            )
            await state_when(time_skipping_env, handle, lambda s: s.unsaved_writes == 2)
            own_redis.thaw()
            await state_when(time_skipping_env, handle, lambda s: s.unsaved_writes == 0)
            queued = {action.action_id for action in await ActionQueue(store, keys).pending(profile.npc_id)}
            assert {f"{profile.npc_id}-talk-frozen-1", f"{profile.npc_id}-talk-frozen-2"} <= queued
            await assert_running(handle)
    finally:
        await life_end(life)
        await store.aclose()


async def test_corrupt_records_in_the_store_cost_memories_not_the_npc(life, time_skipping_env, redis_client, keys):
    profile = demo_profile("gareth_guard")
    handle = await life.start(profile)
    # A memory that is not JSON and a relationship score that is not a number.
    await redis_client.zadd(keys.memory_index(profile.npc_id), {"garbled": 1})
    await redis_client.hset(keys.memory(profile.npc_id, "garbled"), "json", "{not a memory")
    await handle.signal("game_event", GameEvent(event_id="a1", kind="player_attacked", player=PROBE))
    first = await life.wait_for(handle, lambda s: s.events_processed == 1 and s.decision_sequence >= 1)
    assert first.fallbacks == 0, "a corrupt memory is skipped, the rest of the context loads"

    await redis_client.hset(keys.relationships(profile.npc_id), f"player:{PROBE.char_id}", "very angry")
    await handle.signal("game_event", GameEvent(event_id="a2", kind="player_attacked", player=PROBE))
    second = await life.wait_for(handle, lambda s: s.events_processed == 2 and s.decision_sequence >= 2)
    assert second.fallbacks == 0 and second.unsaved_writes == 0
    # The damaged score was read as unknown and the attack's change written over it.
    async with asyncio.timeout(60):
        while (await redis_client.hget(keys.relationships(profile.npc_id), f"player:{PROBE.char_id}")) == "very angry":
            await asyncio.sleep(0.1)
    assert int(await redis_client.hget(keys.relationships(profile.npc_id), f"player:{PROBE.char_id}")) < 0
    await assert_running(handle)


async def life_end(life: NpcLife) -> None:
    await end_lives(life.client, life.task_queue, life.started, visibility=False)


class BrokenActivities:
    """Context, decision and reply activities that fail for good, registered under the real names
    (the samples-python way of replacing activities): the NPC must decide and reply without them."""

    def __init__(self, store: redis.Redis, keys) -> None:
        memory = MemoryStore(store, keys)
        self._real = NpcActivities(memory, ActionQueue(store, keys), OfflineDecisionMaker(), WorldFeed(store, keys))
        self._social = MemoryActivities(memory, OfflineDecisionMaker())

    @activity.defn(name="decide_and_save")
    async def decide_and_save(self, plan: DecisionPlan) -> DecidedAndSaved:
        raise ApplicationError("the context service crashed", non_retryable=True)

    @activity.defn(name="reply_and_save")
    async def reply_and_save(self, plan: ReplyPlan) -> RepliedAndSaved:
        raise ApplicationError("the context service crashed", non_retryable=True)

    @activity.defn(name="decide_next_action")
    async def decide_next_action(self, context: NpcContext) -> DecisionResult:
        raise ApplicationError("every provider answered garbage", non_retryable=True)

    @activity.defn(name="compose_reply")
    async def compose_reply(self, context: DialogueContext) -> ReplyResult:
        raise ApplicationError("every provider answered garbage", non_retryable=True)

    def all(self) -> list:
        return [
            self.decide_and_save,
            self.reply_and_save,
            self.decide_next_action,
            self.compose_reply,
            self._real.save_outcome,
            *self._social.all(),
        ]


async def test_activities_failing_for_good_leave_the_npc_deciding_and_talking(
    time_skipping_env, task_queue, keys, redis_client
):
    life = NpcLife(time_skipping_env.client, task_queue, keys)
    profile = demo_profile("lina_baker")
    worker = Worker(
        time_skipping_env.client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=BrokenActivities(redis_client, keys).all(),
    )
    try:
        async with worker:
            handle = await life.start(profile)
            await handle.signal("game_event", GameEvent(event_id="b1", kind="player_attacked", player=PROBE))
            reply = await handle.execute_update(
                "talk", TalkTurn(turn_id="b2", player=PROBE, text="Hi"), result_type=TalkReply
            )
            assert reply.decided_by == "offline" and reply.text
            state = await life.wait_for(handle, lambda s: s.events_processed == 1 and s.routine_decisions >= 1)
            # Context and decision of the attack, context and reply of the talk.
            assert state.fallbacks == 4 and state.unsaved_writes == 0
            decisions = await handle.query("recent_decisions")
            assert "routine-after-failure" in [decision["trigger"] for decision in decisions]
            await assert_running(handle)
    finally:
        await life_end(life)


async def test_a_long_store_outage_continues_as_new_with_the_unfinished_work(
    time_skipping_env, task_queue, keys, own_redis
):
    """While the store is down, events pile up and the history grows; the NPC continues as new
    anyway, carrying its unsaved writes and pending events, and finishes them when the store is back."""
    store = store_of(own_redis)
    life = NpcLife(time_skipping_env.client, task_queue, keys)
    profile = demo_profile("gareth_guard", importance=4)
    try:
        async with build_worker(time_skipping_env.client, task_queue, store, keys, OfflineDecisionMaker()):
            handle = await life.start(profile, history_length_limit=100)
            own_redis.kill()
            await handle.signal("game_event", GameEvent(event_id="down-0", kind="player_attacked", player=PROBE))
            await state_when(time_skipping_env, handle, lambda s: s.unsaved_writes >= 1)
            for index in range(1, 120):
                await handle.signal(
                    "game_event", GameEvent(event_id=f"down-{index}", kind="world_event", text="Storm", importance=1)
                )
            carried = await state_when(time_skipping_env, handle, lambda s: s.runs >= 2)
            assert carried.unsaved_writes >= 1 and carried.pending_events > 0, (
                "the next run carries the unfinished work"
            )
            own_redis.start()
            done = await state_when(
                time_skipping_env,
                handle,
                lambda s: s.unsaved_writes == 0 and s.pending_events == 0 and s.events_processed == 120,
            )
            assert done.runs >= 2
            memories = await store.zrange(keys.memory_index(profile.npc_id), 0, -1)
            assert len([m for m in memories if b"-event-" in m]) == 120, "every event remembered once"
            await assert_running(handle)
    finally:
        await life_end(life)
        await store.aclose()
