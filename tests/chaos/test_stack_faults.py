"""Chaos, part 1: the real stack as separate processes, each killed or frozen under load.

Events with unique ids (and some sent twice) and talk turns go to NPCs through the API while the
worker, the API and Temporal are killed with -9 and started again, and the state store is killed
for 30 s and then frozen (SIGSTOP) for 30 s. Afterwards: every accepted event was processed
exactly once, no NPC workflow failed or is stuck on a failing task, every action was leased and
executed once, every talk turn was answered or its promised reply arrived, and the stack works
again without anyone restarting it.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
import pytest_asyncio
import redis.asyncio as redis
from temporalio.client import Client, WorkflowExecutionStatus

from aiworld.config import Settings
from aiworld.models import NpcStateView
from aiworld.store.keys import Keys
from aiworld.temporal import connect
from aiworld.world.definition import load_world
from tests.chaos.stack import TASK_QUEUE, Driver, Ledger, Stack

NPC_IDS = ["lina_baker", "gareth_guard", "old_tomas", "orin_beggar", "nessa_florist", "kafra_elin"]
EVENTS_PER_SECOND = 4
TALK_EVERY_SECONDS = 2.0
OUTAGE_SECONDS = 30
PLAYERS = [{"char_id": 150100 + index, "name": f"Chaos{index}", "level": 10, "job_class": 1} for index in range(5)]

pytestmark = pytest.mark.chaos


@pytest_asyncio.fixture(loop_scope="session")
async def stack(tmp_path):
    running = Stack(tmp_path)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def registration(npc_id: str) -> dict:
    profile = next(npc for npc in load_world().npcs if npc.npc_id == npc_id)
    return {
        "npc_id": npc_id,
        "name": profile.name,
        "sprite": profile.sprite,
        "map": profile.map,
        "x": profile.x,
        "y": profile.y,
    }


def event_for(number: int) -> tuple[str, dict]:
    """Arrivals, departures, gifts, attacks and news, spread over the NPCs."""
    npc_id = NPC_IDS[number % len(NPC_IDS)]
    player = PLAYERS[number % len(PLAYERS)]
    kind = ["player_nearby", "item_received", "player_left", "world_event", "player_attacked"][number % 5]
    event = {"event_id": f"chaos-{number}", "kind": kind}
    if kind == "world_event":
        event |= {"text": "Caravans are late today", "importance": 5}
    else:
        event["player"] = player
    if kind == "item_received":
        event |= {"item_id": 512, "amount": 1}
    return npc_id, event


async def send_load(driver: Driver, stop: asyncio.Event) -> int:
    """Events at a steady rate, every fifth one sent a second time; talk turns between them."""
    numbers = itertools.count()
    talks = itertools.count()
    pending: set[asyncio.Task] = set()
    last_talk = time.monotonic()
    sent = 0
    while not stop.is_set():
        number = next(numbers)
        npc_id, event = event_for(number)
        pending.add(asyncio.create_task(driver.send_event(npc_id, event)))
        if number % 5 == 0:
            pending.add(asyncio.create_task(driver.send_event(npc_id, event)))  # a retried POST
        sent += 1
        if time.monotonic() - last_talk >= TALK_EVERY_SECONDS:
            last_talk = time.monotonic()
            turn_number = next(talks)
            turn = {
                "turn_id": f"chaos-turn-{turn_number}",
                "player": PLAYERS[turn_number % len(PLAYERS)],
                "text": "Any news?",
            }
            pending.add(asyncio.create_task(driver.talk(NPC_IDS[turn_number % len(NPC_IDS)], turn)))
        for task in [task for task in pending if task.done()]:
            task.result()  # a request that settled wrongly fails the test here
            pending.discard(task)
        await asyncio.sleep(1 / EVENTS_PER_SECOND)
    await asyncio.gather(*pending)
    return sent


async def run_faults(stack: Stack, driver: Driver, client: Client) -> None:
    probes = itertools.count()

    async def fault(name: str, begin, end, seconds: float) -> None:
        begin()
        await asyncio.sleep(seconds)  # the fault lasts this long on purpose: it is the scenario
        end()
        ended = time.monotonic()
        # Recovered once a player is answered again (a talk turn needs the whole chain).
        while True:
            number = next(probes)
            turn = {"turn_id": f"probe-{number}", "player": PLAYERS[0], "text": "Are you there?"}
            if await driver.talk(NPC_IDS[number % len(NPC_IDS)], turn) == 200:
                break
        driver.ledger.recoveries[name] = time.monotonic() - ended
        if "store" in name:  # players were answered throughout; what the NPCs kept must be written
            while sum(state.unsaved_writes for state in (await states(client)).values()):
                await asyncio.sleep(0.5)
            driver.ledger.recoveries[f"{name}, writes caught up"] = time.monotonic() - ended

    await asyncio.sleep(3)
    await fault("worker killed", stack.worker.kill, stack.worker.start, 3)
    await fault("api killed", stack.api.kill, stack.api.start, 2)
    await fault("temporal killed", stack.temporal.kill, stack.temporal.start, 3)
    await fault("store killed 30 s", stack.redis.kill, stack.redis.start, OUTAGE_SECONDS)
    await fault("store frozen 30 s", stack.redis.freeze, stack.redis.thaw, OUTAGE_SECONDS)


async def states(client: Client) -> dict[str, NpcStateView]:
    return {
        npc_id: await client.get_workflow_handle(f"npc-{npc_id}").query("state", result_type=NpcStateView)
        for npc_id in NPC_IDS
    }


async def test_no_event_lost_or_doubled_and_no_npc_failed_while_every_process_is_killed(stack: Stack):
    ledger = Ledger()
    driver = Driver(stack, ledger)
    client = await connect(Settings(temporal_address=stack.temporal_address))
    stop_load, stop_game = asyncio.Event(), asyncio.Event()
    try:
        for npc_id in NPC_IDS:
            await driver.register(registration(npc_id))
        game = asyncio.create_task(driver.play_the_game(stop_game))
        load = asyncio.create_task(send_load(driver, stop_load))
        await run_faults(stack, driver, client)
        stop_load.set()
        sent = await load

        # Nothing left broken: one more event per NPC and one talk each, without any restart.
        for npc_id in NPC_IDS:
            await driver.send_event(
                npc_id, {"event_id": f"after-{npc_id}", "kind": "world_event", "text": "Calm again", "importance": 5}
            )
            await driver.talk(npc_id, {"turn_id": f"after-{npc_id}", "player": PLAYERS[0], "text": "All well?"})
            assert ledger.talk_answers[f"{npc_id}-talk-after-{npc_id}"] == 200

        # Every event processed once: the NPCs' counts equal the unique ids accepted, so neither a
        # loss nor a double count can hide. (Their actions' results are all "done": those go to the
        # NPCs' memories, not to the NPCs; checked below.)
        async with asyncio.timeout(180):
            while True:
                now = await states(client)
                pending = sum(state.pending_events + state.unsaved_writes for state in now.values())
                expected = {npc_id: len(ledger.accepted_events[npc_id]) for npc_id in NPC_IDS}
                if pending == 0 and all(now[n].events_processed == expected[n] for n in NPC_IDS):
                    break
                await asyncio.sleep(0.5)
        stop_game.set()
        await game

        for npc_id in NPC_IDS:
            described = await client.get_workflow_handle(f"npc-{npc_id}").describe()
            assert described.status == WorkflowExecutionStatus.RUNNING, npc_id
            raw = described.raw_description
            assert not raw.HasField("pending_workflow_task") or raw.pending_workflow_task.attempt <= 1, (
                f"{npc_id} is stuck on a failing workflow task"
            )
        # Runs that continued as new closed as they should (an NPC's run holds 200 events).
        failed = [
            wf.id
            async for wf in client.list_workflows(
                f"TaskQueue='{TASK_QUEUE}' AND ExecutionStatus!='Running' AND ExecutionStatus!='ContinuedAsNew'"
            )
        ]
        assert failed == []

        # Every action leased was executed once and never offered again after its result.
        assert ledger.leased_after_result == []
        assert set(ledger.executed) == ledger.results_recorded
        # And each result is remembered by its NPC exactly once, through the outages.
        store = redis.Redis.from_url(f"redis://127.0.0.1:{stack.redis.port}/0", decode_responses=True)
        try:
            for npc_id in NPC_IDS:
                index = await store.zrange(Keys().memory_index(npc_id), 0, -1)
                remembered = sorted(memory_id for memory_id in index if memory_id.startswith("result-"))
                ours = sorted(f"result-{a}" for a in ledger.results_recorded if a.startswith(f"{npc_id}-"))
                assert remembered == ours, npc_id
        finally:
            await store.aclose()
        # Every talk turn answered, or its promised reply arrived as an action.
        for reply_id, status in ledger.talk_answers.items():
            assert status == 200 or (status == 504 and reply_id in ledger.executed), (reply_id, status)
        assert ledger.answers[500] == 0

        accepted = sum(len(ids) for ids in ledger.accepted_events.values())
        print(
            f"\nchaos: {sent} events sent ({sent // 5} twice), {accepted} accepted and processed once, 0 lost; "
            f"{len(ledger.talk_answers)} talk turns ({sum(1 for s in ledger.talk_answers.values() if s == 504)} late, "
            f"reply queued); {len(ledger.executed)} actions executed once; answers {dict(ledger.answers)}; "
            "recovery " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in ledger.recoveries.items())
        )
    finally:
        stop_load.set()
        stop_game.set()
        await driver.aclose()
