"""The world systems on real Temporal Schedules: a game week in which prices, factions, weather and
quests move for the reasons they should; cycles that are re-run change nothing twice; a failing
cycle leaves the state as it was.

The time-skipping test server has no schedules (CreateSchedule is unimplemented there), so these
tests run on the dev server with schedules a second or two apart and a game day of a few seconds.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest_asyncio
import redis.asyncio as redis
from temporalio import activity, workflow
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer, Worker

# This module defines a workflow, so the sandbox imports it again: what the host has loaded
# (numpy among it, which loads once per process) is passed through, as in workflows/.
with workflow.unsafe.imports_passed_through():
    from activities.world_activities import WorldActivities
    from aiworld.config import WorldSettings
    from aiworld.memory.store import MemoryStore
    from aiworld.models import GameEvent, GameEventKind, NpcProfile, Personality, PlayerRef, ShopItem
    from aiworld.store.action_queue import ActionQueue
    from aiworld.store.keys import Keys
    from aiworld.world.cycle import CycleInput, CycleParams
    from aiworld.world.news import WorldNews
    from aiworld.world.schedules import apply_schedules, schedule_id
    from aiworld.world.store import WorldStore
    from aiworld.world.words import OfflineNarrator
    from workflows.world_cycles import CYCLE_WORKFLOWS, EconomyCycleWorkflow

ARIA = PlayerRef(char_id=150001, name="Aria", map="prontera", x=150, y=150)


def npc(npc_id: str, faction: str, map_name: str = "prontera", **changes: Any) -> NpcProfile:
    return NpcProfile(
        npc_id=npc_id,
        name=npc_id.replace("_", " ").title()[:23],
        sprite=90,
        map=map_name,
        x=150,
        y=150,
        faction=faction,
        personality=Personality(description=f"A member of {faction}."),
        **changes,
    )


HERBALIST = npc(
    "hilda_herbalist", "merchants_guild", importance=6, wealth=5000, shop=[ShopItem(item_id=507, base_price=50)]
)
CAPTAIN = npc("captain_hale", "prontera_guard", importance=8, wealth=3000)
BANDIT = npc("rook_bandit", "bandits", map_name="prt_fild08", importance=4)


@dataclass
class World:
    client: Client
    task_queue: str
    keys: Keys
    store: redis.Redis
    broadcasts: str  # hash news_id -> how many times the broadcast workflow started for it
    last_fire: str = ""  # inbox entry of the last supply cut the test sent

    async def publish(self, *profiles: NpcProfile) -> None:
        memory = MemoryStore(self.store, self.keys)
        for profile in profiles:
            await memory.publish_npc(profile, {})

    async def state(self, system: str) -> dict[str, str]:
        return await self.store.hgetall(self.keys.world(system))

    async def send(self, system: str, event: GameEvent, **where: str) -> str:
        """What the event coordinator does with a game event a system cares about."""
        return await self.store.xadd(self.keys.world_inbox(system), {"event": event.model_dump_json(), **where})

    async def history(self, system: str) -> list[dict[str, str]]:
        return [values for _, values in await self.store.xrange(self.keys.world_history(system))]

    async def actions(self, npc_id: str) -> list[dict]:
        found = []
        for action_id in await self.store.zrange(self.keys.action_queue(npc_id), 0, -1):
            payload = await self.store.hget(self.keys.action(action_id), "payload")
            found.append(json.loads(payload)["action"])
        return found

    async def quests(self) -> list[dict]:
        found = []
        async for key in self.store.scan_iter(match=f"{self.keys.prefix}quest:*"):
            data = await self.store.hget(key, "data")
            if data:
                found.append(json.loads(data))
        return found

    async def until(self, probe: Callable[[], Any], timeout: float = 180) -> Any:
        """Wait for a condition the world reaches on its own schedule."""
        try:
            async with asyncio.timeout(timeout):
                while not (found := await probe()):
                    await asyncio.sleep(0.2)
        except TimeoutError:
            raise AssertionError(f"not reached within {timeout} s: {inspect.getsource(probe).strip()}") from None
        return found


def event(kind: GameEventKind, **fields: Any) -> GameEvent:
    return GameEvent(event_id=f"ev-{uuid.uuid4().hex[:12]}", kind=kind, **fields)


def news_event(text: str = "news", **facts: Any) -> GameEvent:
    return event(GameEventKind.WORLD_EVENT, text=text, facts=facts)


class BroadcastRecorder:
    def __init__(self, store: redis.Redis, key: str) -> None:
        self._store = store
        self._key = key

    @activity.defn(name="record_broadcast")
    async def record_broadcast(self, news: WorldNews) -> None:
        await self._store.hincrby(self._key, news.news_id, 1)
        await self._store.hset(f"{self._key}:news", news.news_id, news.model_dump_json())


@workflow.defn(name="WorldBroadcastWorkflow")
class RecordingBroadcast:
    """Stands in for the event coordinator's fan-out (it arrives with it): records what it was told."""

    @workflow.run
    async def run(self, news: WorldNews) -> None:
        await workflow.execute_activity("record_broadcast", news, start_to_close_timeout=timedelta(seconds=10))


@pytest_asyncio.fixture(loop_scope="session")
async def world(dev_env, task_queue, redis_client, keys) -> AsyncIterator[World]:
    broadcasts = f"{keys.prefix}test:broadcasts"

    recorder = BroadcastRecorder(redis_client, broadcasts)
    world_activities = WorldActivities(
        WorldStore(redis_client, keys),
        MemoryStore(redis_client, keys),
        ActionQueue(redis_client, keys),
        OfflineNarrator(),
    )
    async with Worker(
        dev_env.client,
        task_queue=task_queue,
        workflows=[*CYCLE_WORKFLOWS.values(), RecordingBroadcast],
        activities=[*world_activities.all(), recorder.record_broadcast],
        max_cached_workflows=0,  # every task replays from the start: non-determinism shows here
    ):
        yield World(dev_env.client, task_queue, keys, redis_client, broadcasts)
        await _stop_cycles(dev_env.client, task_queue)


async def _stop_cycles(client: Client, task_queue: str) -> None:
    for system in CYCLE_WORKFLOWS:
        try:
            await client.get_schedule_handle(schedule_id(system, f"{task_queue}-")).delete()
        except Exception:  # noqa: BLE001  (a test that made no schedules)
            pass
    async for execution in client.list_workflows(f"TaskQueue='{task_queue}' AND ExecutionStatus='Running'"):
        try:
            await client.get_workflow_handle(execution.id).terminate("test finished")
        except RPCError as error:  # it finished meanwhile
            if error.status is not RPCStatusCode.NOT_FOUND:
                raise


async def replay_cycles(client: Client, task_queue: str) -> int:
    """Replay every cycle this test ran: a change that makes the cycles non-deterministic fails here."""
    histories = []
    async for execution in client.list_workflows(
        f"TaskQueue='{task_queue}' AND WorkflowType!='WorldBroadcastWorkflow'"
    ):
        histories.append(await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history())
    replayer = Replayer(workflows=list(CYCLE_WORKFLOWS.values()), data_converter=pydantic_data_converter)
    for history in histories:
        await replayer.replay_workflow(history)
    return len(histories)


WEEK_SETTINGS = WorldSettings(
    economy_interval_seconds=2,
    politics_interval_seconds=2,
    environment_interval_seconds=2,
    quests_interval_seconds=1,
    jitter_seconds=0,
    game_day_seconds=3,
    days_per_season=2,
    quest_ttl_seconds=30,
    weather_maps=["prt_fild08"],
)


async def test_a_game_week_on_the_schedules(world: World):
    await world.publish(HERBALIST, CAPTAIN, BANDIT)
    applied = await apply_schedules(world.client, WEEK_SETTINGS, world.task_queue, prefix=f"{world.task_queue}-")
    assert set(applied.values()) == {"created"}
    assert set(
        (await apply_schedules(world.client, WEEK_SETTINGS, world.task_queue, f"{world.task_queue}-")).values()
    ) == {"updated"}
    started_day = int((await world.until(lambda: world.state("environment")))["game_day"])
    await world.until(lambda: _field(world, "economy", "price:507"))

    # Economy: an invasion cuts the herbs; the price climbs, within the rules, and recovers.
    await world.send("economy", news_event("Monsters invade", event="invasion", map="prt_fild08"), map="prt_fild08")
    await world.send("economy", news_event("Herb cellar burnt", supply_item=507, supply_change=-40, cause="a fire"))
    peak = await world.until(lambda: _above(world, "economy", "price:507", 55))
    assert peak <= 100  # ceiling: twice the base price
    trades = await world.until(lambda: _kinds(world, HERBALIST.npc_id, "trade"))
    assert trades[0]["item_id"] == 507

    # Quests: the shortage makes a fetch quest from the merchant who sells herbs. The fire goes on
    # smouldering until the quest cycle has seen the shortage (on a slow machine it may run late).
    fetch = await world.until(lambda: _shortage_quest(world))
    assert fetch["giver"] == HERBALIST.npc_id and fetch["target"] == 507
    taken = news_event("Aria takes the quest", quest_id=fetch["quest_id"], quest_step="taken")
    await world.send("quests", taken.model_copy(update={"player": ARIA}), npc_id=HERBALIST.npc_id)
    await world.until(lambda: _quest(world, quest_id=fetch["quest_id"], status="taken"))
    started = await world.until(lambda: _kinds(world, HERBALIST.npc_id, "start_quest"))
    assert started == [{"kind": "start_quest", "char_id": ARIA.char_id, "quest_id": fetch["slot"]}]
    first = event(GameEventKind.ITEM_RECEIVED, player=ARIA, item_id=507, amount=2)
    await world.send("quests", first, npc_id=HERBALIST.npc_id)
    await world.until(lambda: _quest(world, quest_id=fetch["quest_id"], progress=2))
    rest = event(GameEventKind.ITEM_RECEIVED, player=ARIA, item_id=507, amount=fetch["needed"] - 2)
    await world.send("quests", rest, npc_id=HERBALIST.npc_id)
    await world.send("quests", rest, npc_id=HERBALIST.npc_id)  # the same hand-over, reported twice
    await world.until(lambda: _quest(world, quest_id=fetch["quest_id"], status="completed"))
    late = await world.send(
        "quests", event(GameEventKind.ITEM_RECEIVED, player=ARIA, item_id=507, amount=3), npc_id=HERBALIST.npc_id
    )
    await world.until(lambda: _read_past(world, "quests", late))
    assert len(await _kinds(world, HERBALIST.npc_id, "give_zeny")) == 1  # paid once
    assert len(await _kinds(world, HERBALIST.npc_id, "give_item")) == 1
    assert await world.store.hget(world.keys.relationships(HERBALIST.npc_id), f"player:{ARIA.char_id}") == "10"
    standing = await world.until(
        lambda: world.store.hget(world.keys.faction("merchants_guild"), f"standing:{ARIA.char_id}")
    )
    assert standing == "5"
    await world.until(lambda: _above(world, "economy", "supply:507", 110))  # the delivery reached the market
    # ... and the price comes back down once supply recovered.
    await world.until(lambda: _below(world, "economy", "price:507", 53))

    # Politics: repeated raids start a conflict; a hunt quest is offered to the guard, nobody takes it.
    for raid in range(5):
        attack = news_event(
            f"Raid {raid}", event="attack", faction_a="bandits", faction_b="prontera_guard", cause="raids"
        )
        await world.send("politics", attack, faction="prontera_guard")
    await world.until(lambda: _field(world, "politics", "conflict:bandits:prontera_guard"))
    assert (await world.state("politics"))["victim:bandits:prontera_guard"] == "prontera_guard"
    hunt = await world.until(lambda: _quest(world, kind="hunt"))
    assert hunt["giver"] == CAPTAIN.npc_id and hunt["faction"] == "prontera_guard"
    await world.until(lambda: _quest(world, quest_id=hunt["quest_id"], status="expired"), timeout=180)
    assert not await world.store.zscore(world.keys.open_quests(), hunt["quest_id"])
    peace = news_event("A truce", event="peace", faction_a="bandits", faction_b="prontera_guard", cause="a truce")
    await world.send("politics", peace, faction="prontera_guard")
    await world.until(lambda: _no_field(world, "politics", "conflict:bandits:prontera_guard"))
    await world.until(lambda: _politics_told(world, {0, 1}))  # the war was told, then the peace

    # Environment: a game week passed, the seasons turned, the weather followed them.
    await world.until(lambda: _past_day(world, started_day + 7), timeout=180)
    history = await world.history("environment")
    weather = [json.loads(entry["facts"]) for entry in history if entry["what"].startswith("weather:")]
    assert len({entry["after"] for entry in history if entry["what"] == "season"}) >= 3
    assert all(facts["weather"] != "snow" or facts["season"] == "winter" for facts in weather)
    assert all(facts["weather"] not in ("rain", "storm") or facts["season"] != "winter" for facts in weather)

    # Every news told once; the schedules really fired; every cycle replays.
    counts = await world.store.hgetall(world.broadcasts)
    assert counts and set(counts.values()) == {"1"}
    described = await world.client.get_schedule_handle(schedule_id("economy", f"{world.task_queue}-")).describe()
    assert described.info.num_actions >= 5
    await _stop_cycles(world.client, world.task_queue)
    assert await replay_cycles(world.client, world.task_queue) >= 20


async def test_a_reset_cycle_changes_nothing_twice(world: World):
    await world.publish(HERBALIST)
    await world.send("economy", news_event("Herb cellar burnt", supply_item=507, supply_change=-60, cause="a fire"))
    handle = await world.client.start_workflow(
        EconomyCycleWorkflow.run,
        CycleInput(params=CycleParams()),
        id=f"{world.task_queue}-econ-1",
        task_queue=world.task_queue,
    )
    summary = await handle.result()
    assert "price:507" in summary
    # What the UI shows as the cycle's current details: what it read and changed.
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert metadata.current_details == summary and "read 1 events" in summary
    before = (await world.state("economy"), await world.history("economy"), await world.actions(HERBALIST.npc_id))
    told = await world.until(lambda: world.store.hgetall(world.broadcasts))
    # An operator resets the cycle to its first workflow task: it runs again from the start.
    history = await handle.fetch_history()
    first_task_done = next(e.event_id for e in history.events if e.HasField("workflow_task_completed_event_attributes"))
    reset = await world.client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=world.client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=handle.id, run_id=handle.result_run_id),
            reason="test: a reset cycle",
            workflow_task_finish_event_id=first_task_done,
            request_id=uuid.uuid4().hex,
        )
    )
    again = await world.client.get_workflow_handle(handle.id, run_id=reset.run_id).result()
    assert again == summary
    after = (await world.state("economy"), await world.history("economy"), await world.actions(HERBALIST.npc_id))
    assert after == before
    await world.until(lambda: _all_told_once(world, told))


async def test_a_failing_cycle_leaves_the_state_as_it_was(world: World):
    await world.publish(HERBALIST)
    first = await world.client.execute_workflow(
        EconomyCycleWorkflow.run, CycleInput(), id=f"{world.task_queue}-econ-1", task_queue=world.task_queue
    )
    assert first
    before = await world.state("economy")
    sale = event(GameEventKind.ACTION_RESULT, action_id="hilda-7-0", outcome="done", item_id=507, amount=12)
    await world.send("economy", sale, npc_id=HERBALIST.npc_id)
    # A real fault: the history stream's key holds a string (an operator's slip, a bad restore).
    await world.store.set(world.keys.world_history("economy"), "not a stream")
    failing = await world.client.start_workflow(
        EconomyCycleWorkflow.run, CycleInput(), id=f"{world.task_queue}-econ-2", task_queue=world.task_queue
    )
    try:
        await failing.result()
        raise AssertionError("the cycle should have failed")
    except WorkflowFailureError as failure:
        assert "WRONGTYPE" in str(failure.cause.cause)  # type: ignore[union-attr]
    assert (await failing.describe()).status is WorkflowExecutionStatus.FAILED
    assert await world.state("economy") == before  # nothing half-written, the cursor did not move
    await world.store.delete(world.keys.world_history("economy"))
    await world.client.execute_workflow(
        EconomyCycleWorkflow.run, CycleInput(), id=f"{world.task_queue}-econ-3", task_queue=world.task_queue
    )
    state = await world.state("economy")
    assert state["trade_volume"] == "12"  # the sale counted once, by the cycle after the fault
    assert int(state["demand:507"]) > 100


async def _field(world: World, system: str, name: str) -> str | None:
    return (await world.state(system)).get(name)


async def _no_field(world: World, system: str, name: str) -> bool:
    return name not in await world.state(system)


async def _above(world: World, system: str, name: str, value: int) -> int | None:
    found = await _field(world, system, name)
    return int(found) if found and int(found) > value else None


async def _below(world: World, system: str, name: str, value: int) -> int | None:
    found = await _field(world, system, name)
    return int(found) if found and int(found) < value else None


async def _kinds(world: World, npc_id: str, kind: str) -> list[dict]:
    return [action for action in await world.actions(npc_id) if action["kind"] == kind]


async def _quest(world: World, **wanted: Any) -> dict | None:
    return next((quest for quest in await world.quests() if all(quest.get(k) == v for k, v in wanted.items())), None)


async def _shortage_quest(world: World) -> dict | None:
    if quest := await _quest(world, kind="fetch", status="offered"):
        return quest
    if int(await _field(world, "economy", "supply:507") or 100) > 60:
        await world.send(
            "economy", news_event("The fire flares up", supply_item=507, supply_change=-40, cause="a fire")
        )
    return None


async def _read_past(world: World, system: str, entry_id: str) -> bool:
    cursor = (await world.state(system)).get("inbox_cursor", "")
    return bool(cursor) and tuple(map(int, cursor.split("-"))) >= tuple(map(int, entry_id.split("-")))


async def _politics_told(world: World, peace_flags: set[int]) -> bool:
    told = [json.loads(news) for news in (await world.store.hgetall(f"{world.broadcasts}:news")).values()]
    return {news["facts"].get("peace", 0) for news in told if news["source"] == "politics"} == peace_flags


async def _past_day(world: World, day: int) -> bool:
    return int((await world.state("environment")).get("game_day", "0")) >= day


async def _all_told_once(world: World, told: dict[str, str]) -> bool:
    now = await world.store.hgetall(world.broadcasts)
    return now == told and set(now.values()) == {"1"}
