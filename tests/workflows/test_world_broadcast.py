"""The event coordinator on the time-skipping server: each scope reaches exactly its NPCs, once each."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter

from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.worker import Replayer

from aiworld.config import CoordinatorSettings
from aiworld.memory.store import MemoryStore
from aiworld.models import GameEvent, GameEventKind, NpcProfile, NpcStateView, PlayerRef
from aiworld.npc.offline_policy import OfflineDecisionMaker
from aiworld.ops.metrics import WorkerMetrics
from aiworld.ops.worker import build_worker
from aiworld.temporal import npc_workflow_id
from aiworld.world.broadcast import start_broadcast
from aiworld.world.news import NewsSource, Scope, WorldNews
from tests.conftest import REDIS_URL, NpcLife, demo_profile, end_lives, query_may_be_asked_again
from tests.processes import ServerProcess
from workflows.world_broadcast import (
    BROADCAST_WORKFLOW_TYPE,
    BroadcastInput,
    BroadcastReport,
    WorldBroadcastWorkflow,
    broadcast_workflow_id,
)

# npc id -> (map, x, y, faction)
TOWN = {
    "baker_ann": ("prontera", 150, 180, "merchants"),
    "guard_bob": ("prontera", 160, 182, "prontera_guard"),
    "guard_cid": ("prontera", 100, 100, "prontera_guard"),
    "smith_dee": ("geffen", 120, 60, "merchants"),
    "monk_eli": ("payon", 200, 100, "none"),
}


def townsfolk(npc_id: str, map_name: str, x: int, y: int, faction: str = "none") -> NpcProfile:
    base = demo_profile("lina_baker").model_dump()
    return NpcProfile.model_validate(
        base | {"npc_id": npc_id, "map": map_name, "x": x, "y": y, "faction": faction, "area": None, "routine": []}
    )


async def settle_town(life: NpcLife, redis_client, keys) -> None:
    store = MemoryStore(redis_client, keys)
    for npc_id, (map_name, x, y, faction) in TOWN.items():
        profile = townsfolk(npc_id, map_name, x, y, faction)
        await life.start(profile)
        await store.publish_npc(profile, {})  # as each NPC's first saved decision does
    # Listed but not living (retired long ago): counted, never signalled back to life.
    await store.publish_npc(townsfolk("ghost_fay", "prontera", 151, 181), {})


async def replay_broadcast(client: Client, news_id: str) -> int:
    """Replay every run of a fan-out (continue-as-new chains them): a change that breaks running
    fan-outs fails here. Returns how many runs were replayed."""
    histories = []
    run_id: str | None = None
    while True:
        history = await client.get_workflow_handle(broadcast_workflow_id(news_id), run_id=run_id).fetch_history()
        histories.append(history)
        run_id = history.events[0].workflow_execution_started_event_attributes.continued_execution_run_id
        if not run_id:
            break
    replayer = Replayer(workflows=[WorldBroadcastWorkflow], data_converter=pydantic_data_converter)
    for history in histories:
        await replayer.replay_workflow(history)
    return len(histories)


def news(news_id: str, scope: Scope, **changes) -> WorldNews:
    return WorldNews(
        news_id=news_id, source=NewsSource.OPERATOR, scope=scope, text="The bells ring", importance=3, **changes
    )


async def signals_received(client: Client, npc_id: str) -> Counter:
    """How many `game_event` signals with each event id the NPC's history holds."""
    counts: Counter = Counter()
    history = await client.get_workflow_handle(npc_workflow_id(npc_id)).fetch_history()
    for event in history.events:
        if event.HasField("workflow_execution_signaled_event_attributes"):
            signaled = event.workflow_execution_signaled_event_attributes
            if signaled.signal_name == "game_event":
                counts[json.loads(signaled.input.payloads[0].data)["event_id"]] += 1
    return counts


async def test_each_scope_reaches_exactly_its_npcs_once_each(life: NpcLife, redis_client, keys):
    await settle_town(life, redis_client, keys)
    scopes = {
        "n-npc": (Scope(kind="npc", npc_id="monk_eli"), {"monk_eli"}),
        "n-near": (Scope(kind="near", map="prontera", x=152, y=181, radius=10), {"baker_ann", "guard_bob"}),
        "n-map": (Scope(kind="map", map="prontera"), {"baker_ann", "guard_bob", "guard_cid"}),
        "n-faction": (Scope(kind="faction", faction="merchants"), {"baker_ann", "smith_dee"}),
        "n-world": (Scope(kind="world"), set(TOWN)),
    }
    reports = {}
    for news_id, (scope, _) in scopes.items():
        assert await start_broadcast(life.client, news(news_id, scope), life.task_queue)
        handle = life.client.get_workflow_handle(broadcast_workflow_id(news_id), result_type=BroadcastReport)
        reports[news_id] = await handle.result()
    for news_id, (_, wanted) in scopes.items():
        assert reports[news_id].delivered == len(wanted), news_id
        assert await replay_broadcast(life.client, news_id) == 1
    # The ghost is in the near, map and world scopes: found, not living, not started.
    assert [reports[n].not_living for n in scopes] == [0, 1, 1, 0, 1]

    expected = {npc_id: sum(npc_id in wanted for _, wanted in scopes.values()) for npc_id in TOWN}
    for npc_id, count in expected.items():
        handle = life.client.get_workflow_handle(npc_workflow_id(npc_id))
        await life.wait_for(handle, lambda state, count=count: state.events_processed == count)
        received = await signals_received(life.client, npc_id)
        assert received == Counter(
            {f"{news_id}:{npc_id}": 1 for news_id, (_, wanted) in scopes.items() if npc_id in wanted}
        ), npc_id


async def test_news_fanned_out_again_tells_nobody_twice(life: NpcLife, redis_client, keys):
    await settle_town(life, redis_client, keys)
    bells = news("n-again", Scope(kind="map", map="prontera"))
    assert await start_broadcast(life.client, bells, life.task_queue)
    await life.client.get_workflow_handle(broadcast_workflow_id("n-again")).result()
    # The same request again (a retried POST, a cycle run twice) starts nothing.
    assert not await start_broadcast(life.client, bells, life.task_queue)
    # Even a second fan-out of the same news under another workflow id (an operator's reset)
    # is dropped by every NPC: the event ids are the same.
    again = await life.client.execute_workflow(
        BROADCAST_WORKFLOW_TYPE,
        bells,
        id="broadcast-n-again-reset",
        task_queue=life.task_queue,
        result_type=BroadcastReport,
    )
    assert again.delivered == 3
    for npc_id in ("baker_ann", "guard_bob", "guard_cid"):
        handle = life.client.get_workflow_handle(npc_workflow_id(npc_id))
        assert (await signals_received(life.client, npc_id))[f"n-again:{npc_id}"] == 2
        state = await life.wait_for(handle, lambda state: state.pending_events == 0 and state.events_processed >= 1)
        assert state.events_processed == 1


async def test_a_game_event_for_a_scope_reaches_each_npc_under_its_own_id(life: NpcLife, redis_client, keys):
    await settle_town(life, redis_client, keys)
    hunter = PlayerRef(char_id=150001, name="Aria", level=30, map="prontera", x=155, y=181)
    kill = GameEvent(event_id="ev-77", kind=GameEventKind.PLAYER_KILLED_MONSTER, player=hunter, detail="monster 1002")
    field = WorldNews(
        news_id="ev-77",
        source=NewsSource.GAME,
        scope=Scope(kind="near", map="prontera", x=155, y=181, radius=8),
        text="Aria slew a monster",
        event=kill,
    )
    assert field.event_for("guard_bob").model_dump(exclude={"event_id"}) == kill.model_dump(exclude={"event_id"})
    assert await start_broadcast(life.client, field, life.task_queue)
    report = await life.client.get_workflow_handle(broadcast_workflow_id("ev-77"), result_type=BroadcastReport).result()
    assert report.delivered == 2
    decisions = await life.wait_for_decisions(
        life.client.get_workflow_handle(npc_workflow_id("guard_bob")), lambda records: bool(records)
    )
    assert decisions[-1].event_ids == ["ev-77:guard_bob"]


async def events_processed(handle: WorkflowHandle) -> NpcStateView:
    """The NPC's state once it has nothing pending; a loaded worker may time a task out meanwhile."""
    async with asyncio.timeout(120):
        while True:
            try:
                state = await handle.query("state", result_type=NpcStateView)
            except RPCError as error:
                if not query_may_be_asked_again(error):
                    raise
            else:
                if state.events_processed >= 1 and state.pending_events == 0:
                    return state
            await asyncio.sleep(0.2)


async def test_a_worker_killed_mid_fan_out_resumes_and_every_npc_hears_once(
    dev_env, task_queue, redis_client, keys, tmp_path
):
    """The coordinator runs in an `aiworld worker` process of its own, killed with -9 while it
    signals (one at a time, so the fan-out is surely under way); the one started after it ends the
    fan-out from the last heartbeat. NPCs live on the test's worker and count what they process."""
    npcs = NpcLife(dev_env.client, task_queue, keys)
    try:
        async with build_worker(dev_env.client, task_queue, redis_client, keys, OfflineDecisionMaker()):
            await fan_out_through_a_crash(dev_env, npcs, redis_client, keys, tmp_path)
    finally:
        await end_lives(dev_env.client, task_queue, npcs.started, visibility=False)


async def fan_out_through_a_crash(dev_env, dev_life: NpcLife, redis_client, keys, tmp_path) -> None:
    in_scope = [f"villager_{index:03d}" for index in range(120)]
    elsewhere = [f"pilgrim_{index:03d}" for index in range(20)]
    store = MemoryStore(redis_client, keys)
    limit = asyncio.Semaphore(20)

    async def settle(npc_id: str, map_name: str) -> None:
        profile = townsfolk(npc_id, map_name, 100 + len(npc_id) % 7, 100)
        async with limit:
            await dev_life.start(profile)
            await store.publish_npc(profile, {})

    await asyncio.gather(*(settle(npc_id, "prontera") for npc_id in in_scope))
    await asyncio.gather(*(settle(npc_id, "payon") for npc_id in elsewhere))

    coordinator_queue = f"{dev_life.task_queue}-coordinator"
    env = {
        **os.environ,
        "AIWORLD_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "AIWORLD_REDIS_URL": REDIS_URL,
        "AIWORLD_REDIS_KEY_PREFIX": keys.prefix,
        "AIWORLD_TASK_QUEUE": coordinator_queue,
        "AIWORLD_COORDINATOR__MAX_CONCURRENT_SIGNALS": "1",
        "AIWORLD_LLM__DEFAULT_PROVIDER": "offline",
        "AIWORLD_LOG_LEVEL": "WARNING",
    }
    worker = ServerProcess(
        "coordinator", lambda _: ([sys.executable, "-m", "aiworld.cli", "worker"], env), 0, tmp_path / "worker.log"
    )
    worker.start()
    try:
        bells = news("n-crash", Scope(kind="map", map="prontera"))
        assert await start_broadcast(dev_env.client, bells, coordinator_queue)
        handle = dev_env.client.get_workflow_handle(broadcast_workflow_id("n-crash"), result_type=BroadcastReport)
        async with asyncio.timeout(120):
            while True:  # until the delivery activity has reported progress
                described = await handle.describe()
                pending = described.raw_description.pending_activities
                if pending and pending[0].heartbeat_details.payloads:
                    break
                await asyncio.sleep(0.05)
        worker.kill()
        worker.start()
        async with asyncio.timeout(180):
            report = await handle.result()
    finally:
        worker.stop()

    assert report.resumed and report.resumed[0] >= 1, report  # the retry began where the heartbeat said
    await replay_broadcast(dev_env.client, "n-crash")
    assert report.delivered == len(in_scope) and report.not_living == 0
    for npc_id in in_scope:
        state = await events_processed(dev_env.client.get_workflow_handle(npc_workflow_id(npc_id)))
        assert state.events_processed == 1, npc_id
        assert set(await signals_received(dev_env.client, npc_id)) == {f"n-crash:{npc_id}"}
    for npc_id in elsewhere:
        assert await signals_received(dev_env.client, npc_id) == Counter(), npc_id


async def test_a_large_scope_goes_page_by_page_and_continues_as_new(time_skipping_env, task_queue, redis_client, keys):
    """300 listed NPCs, 50 per page, two pages per run: the fan-out carries its cursor and counts
    through continue-as-new. Only two of them live; the others are counted, not started."""
    client = time_skipping_env.client
    store = MemoryStore(redis_client, keys)
    for index in range(298):
        await store.publish_npc(townsfolk(f"listed_{index:03d}", "izlude", 50, 50), {})
    npcs = NpcLife(client, task_queue, keys)
    small_pages = CoordinatorSettings(page_size=50)
    try:
        async with build_worker(client, task_queue, redis_client, keys, OfflineDecisionMaker(), small_pages):
            for npc_id in ("alive_one", "alive_two"):
                profile = townsfolk(npc_id, "izlude", 60, 60)
                await npcs.start(profile)
                await store.publish_npc(profile, {})
            crowd = news("n-crowd", Scope(kind="map", map="izlude"))
            report = await client.execute_workflow(
                BROADCAST_WORKFLOW_TYPE,
                BroadcastInput(**crowd.model_dump(), pages_per_run=2),
                id=broadcast_workflow_id("n-crowd"),
                task_queue=task_queue,
                result_type=BroadcastReport,
            )
            assert await replay_broadcast(client, "n-crowd") == report.runs
            for npc_id in ("alive_one", "alive_two"):
                state = await events_processed(client.get_workflow_handle(npc_workflow_id(npc_id)))
                assert state.events_processed == 1
                assert await signals_received(client, npc_id) == Counter({f"n-crowd:{npc_id}": 1})
    finally:
        await end_lives(client, task_queue, npcs.started, visibility=False)
    assert report.delivered == 2 and report.not_living == 298
    assert report.pages >= 6 and report.runs >= 3


async def test_the_worker_counts_what_its_fan_outs_told(time_skipping_env, task_queue, redis_client, keys):
    """`aiworld_coordinator_signals_total` on the worker's metrics: NPCs told, and listed NPCs
    that no longer live."""
    metrics = WorkerMetrics()
    npcs = NpcLife(time_skipping_env.client, task_queue, keys)
    try:
        async with build_worker(
            time_skipping_env.client, task_queue, redis_client, keys, OfflineDecisionMaker(), metrics=metrics
        ):
            await settle_town(npcs, redis_client, keys)
            assert await start_broadcast(npcs.client, news("n-counted", Scope(kind="map", map="prontera")), task_queue)
            handle = npcs.client.get_workflow_handle(broadcast_workflow_id("n-counted"), result_type=BroadcastReport)
            assert (await handle.result()).delivered == 3
    finally:
        await end_lives(time_skipping_env.client, task_queue, npcs.started, visibility=False)
    sample = metrics.registry.get_sample_value
    assert sample("aiworld_coordinator_signals_total", {"outcome": "delivered"}) == 3
    assert sample("aiworld_coordinator_signals_total", {"outcome": "not_living"}) == 1  # the ghost of prontera
