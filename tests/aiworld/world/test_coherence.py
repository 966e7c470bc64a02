"""The coherence monitor on the dev server, run by its schedule: every invariant broken on purpose
is found and repaired (or reported) by one run and a second run finds nothing; a run over a
healthy world changes nothing; the last report is served at GET /ai/world/coherence."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest_asyncio
from redis.client import NEVER_DECODE
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.client import Client, ScheduleActionExecutionStartWorkflow
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.worker import Replayer

from aiworld.config import CoherenceSettings
from aiworld.memory.store import MemoryStore
from aiworld.models import GameEvent, Memory, NpcStateView, QueuedAction, SayAction
from aiworld.ops.worker import WORKFLOWS
from aiworld.store.action_queue import ActionQueue
from aiworld.store.keys import text_of
from aiworld.temporal import npc_workflow_id
from aiworld.world.coherence import CoherenceReport, apply_coherence_schedule, schedule_id
from aiworld.world.directory import NpcDirectory
from api.app import create_app
from tests.api.conftest import API_KEYS, api_settings, open_api
from tests.conftest import demo_profile

FESTIVAL = GameEvent(event_id="festival", kind="world_event", text="A festival starts in Prontera", importance=5)
RUN_WAIT_SECONDS = 120


@pytest_asyncio.fixture(loop_scope="session")
async def coherence_schedule(dev_env, keys, task_queue):
    """The `world-coherence` schedule of this test (its own id), far too slow to fire by itself."""
    prefix = keys.prefix.replace(":", "-")
    settings = CoherenceSettings(interval_seconds=86_400)
    assert await apply_coherence_schedule(dev_env.client, settings, task_queue, prefix) == "created"
    handle = dev_env.client.get_schedule_handle(schedule_id(prefix))
    yield handle
    await handle.delete()


async def scheduled_run(client: Client, schedule) -> CoherenceReport:
    """Trigger the schedule once and wait for the run it starts."""
    before = len((await schedule.describe()).info.recent_actions)
    await schedule.trigger()
    async with asyncio.timeout(RUN_WAIT_SECONDS):
        while len((described := await schedule.describe()).info.recent_actions) <= before:
            await asyncio.sleep(0.2)
    started = described.info.recent_actions[-1].action
    assert isinstance(started, ScheduleActionExecutionStartWorkflow)
    run = client.get_workflow_handle(
        started.workflow_id, run_id=started.first_execution_run_id, result_type=CoherenceReport
    )
    report = await run.result()
    # The run's history replays with the current code.
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    await replayer.replay_workflow(await run.fetch_history())
    return report


async def living_world(life, redis_client, keys, npc_ids: list[str]) -> None:
    """NPCs that decided once (so they are published and listed), with every action delivered.
    No player is near, so the less important ones sleep and publish nothing more meanwhile."""
    handles = [await life.start(demo_profile(npc_id)) for npc_id in npc_ids]
    for handle in handles:
        await handle.signal("game_event", FESTIVAL)
    async with asyncio.timeout(60):
        for handle in handles:
            while True:
                try:  # a worker that replays every task (no cache) may be between attempts
                    state = await handle.query("state", result_type=NpcStateView)
                except RPCError:
                    state = None
                if state and state.decision_sequence >= 1 and not state.pending_events:
                    break
                await asyncio.sleep(0.2)
    directory = NpcDirectory(redis_client, keys)
    async with asyncio.timeout(30):
        while not set(npc_ids) <= set(await directory.everyone()):
            await asyncio.sleep(0.1)
    queue = ActionQueue(redis_client, keys)
    for claimed in await queue.claim(limit=500):
        await queue.complete(claimed.action.action_id, "done")


def found(report: CoherenceReport) -> dict[str, tuple[int, int, int]]:
    return {check.name: (check.found, check.repaired, check.unrepaired) for check in report.checks if check.found}


async def snapshot(redis_client, keys) -> dict[str, object]:
    """Every key of this test and its contents, but the report itself."""
    state: dict[str, object] = {}
    async for raw in redis_client.scan_iter(match=f"{keys.prefix}*", count=1000):
        key = text_of(raw)
        if key == keys.coherence_report():
            continue
        kind = text_of(await redis_client.type(key))
        if kind == "hash":  # as bytes: memories' vectors are binary
            state[key] = await redis_client.execute_command("HGETALL", key, **{NEVER_DECODE: True})
        elif kind == "zset":
            state[key] = await redis_client.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            state[key] = await redis_client.smembers(key)
        elif kind == "string":
            state[key] = await redis_client.get(key)
        else:
            state[key] = kind
    return state


async def test_one_run_repairs_every_broken_invariant_and_a_second_run_finds_nothing(
    dev_life, dev_env, redis_client, keys, coherence_schedule
):
    client = dev_env.client
    await living_world(
        dev_life, redis_client, keys, ["lina_baker", "pip_urchin", "kafra_elin", "old_tomas", "mira_alchemist"]
    )
    queue = ActionQueue(redis_client, keys)
    now = datetime.now(UTC)

    # NPC workflows: one retired (completed), one terminated by hand.
    await client.get_workflow_handle(npc_workflow_id("old_tomas")).signal("retire")
    await client.get_workflow_handle(npc_workflow_id("old_tomas")).result()
    await client.get_workflow_handle(npc_workflow_id("mira_alchemist")).terminate("an operator's mistake")
    # Out of place: off its area; listed on another map.
    await redis_client.hset(keys.npc("pip_urchin"), mapping={"x": 5, "y": 5})
    await redis_client.hset(keys.npc("kafra_elin"), "map", "geffen")
    # A dead letter: leased five times, never reported; an action for an NPC that never lived.
    dead = QueuedAction(
        action_id="lina_baker-900-0",
        npc_id="lina_baker",
        sequence=900,
        action=SayAction(text="Fresh bread!"),
        map="prontera",
        npc_name="Lina",
        created_at=now,
    )
    await queue.enqueue(dead)
    for _ in range(5):
        assert await queue.claim(npc_id="lina_baker", lease_seconds=0, now=now)
    await queue.enqueue(dead.model_copy(update={"action_id": "ghost_npc-1-0", "npc_id": "ghost_npc"}))
    # Records that fail their schema.
    broken = Memory(memory_id="broken", kind="observation", text="a record to be damaged", created_at=now)
    assert await MemoryStore(redis_client, keys).remember("lina_baker", broken)
    await redis_client.hset(keys.memory("lina_baker", "broken"), "json", "{not json")
    await redis_client.hset(keys.relationships("lina_baker"), mapping={"player:1": "lots", "player:2": "500"})
    # World values out of bounds.
    await redis_client.hset(keys.world("economy"), mapping={"price:9001": "-5", "price:9002": "abc", "price:519": 200})
    await redis_client.hset(keys.world("politics"), "relation:guard:thieves", 300)
    await redis_client.hset(keys.faction("prontera_guard"), "relation:thieves", -250)
    # A belief the world has since changed: Lina heard bread was 15 zeny; it is 25 now.
    await MemoryStore(redis_client, keys).remember(
        "lina_baker",
        Memory(memory_id="heard-price", text="News: bread is cheap", facts={"economy.price:512": 15}, created_at=now),
    )
    await redis_client.hset(keys.world("economy"), "price:512", 25)

    report = await scheduled_run(client, coherence_schedule)

    assert found(report) == {
        "npc_workflows": (2, 2, 0),
        "npc_out_of_place": (2, 2, 0),
        "dead_letters": (1, 1, 0),
        "orphan_actions": (1, 1, 0),
        "invalid_records": (3, 3, 0),
        "world_values_out_of_bounds": (4, 4, 0),
        "shop_price_drift": (1, 1, 0),
        "stale_beliefs": (1, 1, 0),
    }
    assert not [check.error for check in report.checks if check.error]
    directory = NpcDirectory(redis_client, keys)
    assert "old_tomas" not in await directory.everyone()
    mira = await client.get_workflow_handle(npc_workflow_id("mira_alchemist")).describe()
    assert mira.status == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING
    moves = [a for a in await queue.pending("pip_urchin") if a.action.kind == "move"]
    assert [(m.action.x, m.action.y) for m in moves] == [(130, 160)]  # type: ignore[union-attr]
    assert await redis_client.hmget(keys.npc("pip_urchin"), ["x", "y"]) == ["130", "160"]
    assert await redis_client.hget(keys.npc("kafra_elin"), "map") == "prontera"
    assert (await directory.everyone())["kafra_elin"] == "prontera"
    dead_status = await queue.status("lina_baker-900-0")
    assert dead_status is not None and dead_status["status"] == "failed"
    assert dead_status["detail"] == "expired by the coherence monitor: leased 5 times and never reported"
    ghost_status = await queue.status("ghost_npc-1-0")
    assert ghost_status is not None and ghost_status["status"] == "failed"
    assert "broken" not in await redis_client.zrange(keys.memory_index("lina_baker"), 0, -1)
    assert not await redis_client.hexists(keys.memory_cues("lina_baker"), "broken")
    assert not await redis_client.hexists(keys.memory_vectors("lina_baker"), "broken")
    assert await redis_client.hget(keys.quarantined_memory("lina_baker", "broken"), "json") == "{not json"
    assert await redis_client.hgetall(keys.relationships("lina_baker")) == {"player:2": "100"}
    economy = await redis_client.hgetall(keys.world("economy"))
    assert economy["price:9001"] == "1" and "price:9002" not in economy
    assert await redis_client.hget(keys.world("politics"), "relation:guard:thieves") == "100"
    assert await redis_client.hget(keys.faction("prontera_guard"), "relation:thieves") == "-100"
    trades = [a for a in await queue.pending("lina_baker") if a.action.kind == "trade"]
    assert [(t.action.item_id, t.action.price) for t in trades] == [(519, 80)]  # type: ignore[union-attr]
    assert await redis_client.hget(keys.npc("lina_baker"), "shop:519") == "80"
    # Lina hears the news and remembers the world's value.
    memories = MemoryStore(redis_client, keys)
    async with asyncio.timeout(60):
        while not any(
            memory.facts == {"economy.price:512": 25}
            for memory in await memories.recall("lina_baker", now=datetime.now(UTC), limit=100)
        ):
            await asyncio.sleep(0.2)

    second = await scheduled_run(client, coherence_schedule)
    assert found(second) == {}

    api = create_app(api_settings(keys, "unused"), client=client, store=redis_client)
    async with api.router.lifespan_context(api), await open_api(api) as http:
        http.headers["X-API-Key"] = API_KEYS[0]
        served = CoherenceReport.model_validate((await http.get("/ai/world/coherence")).json())
    assert served == second


async def test_a_run_over_a_healthy_world_changes_nothing(dev_life, dev_env, redis_client, keys, coherence_schedule):
    await living_world(dev_life, redis_client, keys, ["nessa_florist", "kafra_elin"])
    await redis_client.hset(keys.world("economy"), mapping={"price:712": 12, "price:744": 250})
    await redis_client.hset(keys.world("politics"), "relation:guard:thieves", -40)
    before = await snapshot(redis_client, keys)

    report = await scheduled_run(dev_env.client, coherence_schedule)

    assert found(report) == {} and not [check.error for check in report.checks if check.error]
    assert [check.name for check in report.checks] == [
        "npc_workflows",
        "npc_out_of_place",
        "dead_letters",
        "orphan_actions",
        "invalid_records",
        "world_values_out_of_bounds",
        "shop_price_drift",
        "stale_beliefs",
    ]
    assert await snapshot(redis_client, keys) == before


async def test_what_cannot_be_repaired_safely_is_reported(dev_life, dev_env, redis_client, keys, coherence_schedule):
    await living_world(dev_life, redis_client, keys, ["lina_baker"])
    # Listed, but no workflow ever ran and the world file does not know it; a market price the
    # game rules do not let Lina's shop come near (at most twice her base price of 40).
    await redis_client.hset(keys.all_npcs(), "stranger_npc", "prontera")
    await redis_client.hset(keys.world("economy"), "price:519", 5000)

    report = await scheduled_run(dev_env.client, coherence_schedule)

    assert found(report) == {"npc_workflows": (1, 0, 1), "shop_price_drift": (1, 0, 1)}
    workflows = next(check for check in report.checks if check.name == "npc_workflows")
    assert workflows.examples[0].subject == "npc:stranger_npc" and workflows.examples[0].repair is None
    assert "no profile is known" in workflows.examples[0].problem
    assert await redis_client.hget(keys.npc("lina_baker"), "shop:519") is None
    assert "| shop_price_drift | 1 | 0 | 1 |" in report.summary()


async def test_the_schedule_is_applied_idempotently_and_keeps_an_operators_pause(dev_env, keys, task_queue):
    prefix = keys.prefix.replace(":", "-") + "apply-"
    settings = CoherenceSettings(interval_seconds=3600)
    assert await apply_coherence_schedule(dev_env.client, settings, task_queue, prefix) == "created"
    handle = dev_env.client.get_schedule_handle(schedule_id(prefix))
    try:
        await handle.pause(note="investigating")
        assert await apply_coherence_schedule(dev_env.client, settings, task_queue, prefix) == "updated"
        described = await handle.describe()
        assert described.schedule.state.paused and described.schedule.state.note == "investigating"
        assert described.schedule.action.workflow == "CoherenceCheckWorkflow"  # type: ignore[union-attr]
    finally:
        await handle.delete()


async def test_a_check_that_fails_is_reported_and_the_others_still_run(
    dev_life, dev_env, redis_client, keys, coherence_schedule
):
    await living_world(dev_life, redis_client, keys, ["kafra_elin"])
    await redis_client.hset(keys.relationships("kafra_elin"), "player:3", "-300")
    # The economy's hash damaged into a string: every read of it fails with WRONGTYPE.
    await redis_client.set(keys.world("economy"), "not a hash")

    report = await scheduled_run(dev_env.client, coherence_schedule)

    errors = {check.name: check.error for check in report.checks if check.error}
    assert sorted(errors) == ["shop_price_drift", "stale_beliefs", "world_values_out_of_bounds"]
    assert all("WRONGTYPE" in error for error in errors.values() if error)
    assert found(report) == {"invalid_records": (1, 1, 0)}
    assert await redis_client.hget(keys.relationships("kafra_elin"), "player:3") == "-100"
    assert "error: " in report.summary()
