"""The cost of one cycle of each world system in a world of 1,000 NPCs.

    python -m benchmarks.world_cycles                 # 1,000 NPCs, 3 cycles per system
    python -m benchmarks.world_cycles --npcs 5000 --events 2000

A dev server (in memory) and a worker in this process, the state store on REDIS_URL (default
redis://127.0.0.1:6379/0, under a key prefix of its own, removed at the end). The world: NPCs over
20 maps and 10 factions, one in five a merchant with two or three of 60 items; before each cycle,
`--events` game events wait in the system's inbox (sales, supply shocks, raids, kills and quest
hand-overs). For each system: wall ms per cycle, activities per cycle, history events per cycle
and the size of the cycle's history. Words by the offline writer (an LLM adds its own latency).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from typing import Any

import redis.asyncio as redis
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.world_activities import WorldActivities
from aiworld.memory.store import MemoryStore
from aiworld.models import GameEvent, GameEventKind, NpcProfile, Personality, PlayerRef, ShopItem
from aiworld.ops import binaries
from aiworld.store.action_queue import ActionQueue
from aiworld.store.keys import Keys
from aiworld.world.cycle import SYSTEMS, CycleInput, CycleParams
from aiworld.world.news import WorldNews
from aiworld.world.schedules import WORKFLOW_TYPES
from aiworld.world.store import WorldStore
from aiworld.world.words import OfflineNarrator
from benchmarks.measure import describe_load, machine_load
from workflows.world_cycles import CYCLE_WORKFLOWS

MAPS = [f"map{index:02d}" for index in range(20)]
FACTIONS = [f"faction{index}" for index in range(10)]
ITEMS = list(range(501, 561))
PLAYER = PlayerRef(char_id=150001, name="Bench", map="map00", x=100, y=100)


@workflow.defn(name="WorldBroadcastWorkflow", sandboxed=False)
class NoBroadcast:
    """Stands in for the event coordinator's fan-out, measured by its own benchmark: a cycle only
    starts it (ABANDON) and does not wait for it."""

    @workflow.run
    async def run(self, news: WorldNews) -> None:
        return None


def world_npcs(count: int) -> list[NpcProfile]:
    npcs = []
    for index in range(count):
        shop = []
        if index % 5 == 0:
            shop = [
                ShopItem(item_id=ITEMS[(index + k * 7) % len(ITEMS)], base_price=50 + 10 * k)
                for k in range(2 + index % 2)
            ]
        npcs.append(
            NpcProfile(
                npc_id=f"npc_{index:05d}",
                name=f"Npc {index}",
                sprite=90,
                map=MAPS[index % len(MAPS)],
                x=100 + index % 50,
                y=100 + index % 40,
                faction=FACTIONS[index % len(FACTIONS)],
                personality=Personality(description="A resident with a long enough description to be realistic."),
                importance=1 + index % 10,
                wealth=5000,
                shop=shop,
            )
        )
    return npcs


def inbox_events(system: str, count: int, round_: int) -> list[tuple[GameEvent, dict[str, str]]]:
    events = []
    for index in range(count):
        event_id = f"bench-{system}-{round_}-{index}"
        if system == "economy":
            event = GameEvent(
                event_id=event_id,
                kind=GameEventKind.ACTION_RESULT,
                action_id=f"a{index}",
                outcome="done",
                item_id=ITEMS[index % len(ITEMS)],
                amount=1 + index % 3,
            )
        elif system == "politics":
            a, b = FACTIONS[index % 10], FACTIONS[(index + 1) % 10]
            event = GameEvent(
                event_id=event_id,
                kind=GameEventKind.WORLD_EVENT,
                text="raid",
                facts={"event": "attack" if index % 3 else "gift", "faction_a": a, "faction_b": b},
            )
        elif system == "quests":
            event = GameEvent(
                event_id=event_id, kind=GameEventKind.PLAYER_KILLED_MONSTER, player=PLAYER, detail="monster 1002"
            )
        else:
            return []
        events.append((event, {"map": MAPS[index % len(MAPS)]}))
    return events


async def measure(npcs: int = 1000, events: int = 500, cycles: int = 3, redis_url: str | None = None) -> dict[str, Any]:
    url = redis_url or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    store = redis.Redis.from_url(url, decode_responses=True)
    keys = Keys(prefix=f"bench:{uuid.uuid4().hex[:8]}:")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(binaries.temporal_cli()), data_converter=pydantic_data_converter
    )
    task_queue = f"bench-world-{uuid.uuid4().hex[:8]}"
    results: dict[str, Any] = {"npcs": npcs, "events_per_cycle": events, "cycles": cycles}
    try:
        memory = MemoryStore(store, keys)
        began = time.perf_counter()
        for profile in world_npcs(npcs):
            await memory.publish_npc(profile, {})
        results["publish_seconds"] = round(time.perf_counter() - began, 1)
        # Shortages and a conflict, so the quest cycle has quests to generate and events to match.
        await store.hset(keys.world("economy"), mapping={f"supply:{item}": "40" for item in ITEMS[:8]})
        await store.hset(
            keys.world("politics"),
            mapping={
                f"conflict:{FACTIONS[0]}:{FACTIONS[1]}": "raids",
                f"victim:{FACTIONS[0]}:{FACTIONS[1]}": FACTIONS[1],
            },
        )
        world = WorldActivities(WorldStore(store, keys), memory, ActionQueue(store, keys), OfflineNarrator())
        params = CycleParams(game_day_seconds=60, weather_maps=MAPS, inbox_batch=max(events, 1), max_open_quests=16)
        async with Worker(
            env.client,
            task_queue=task_queue,
            workflows=[*CYCLE_WORKFLOWS.values(), NoBroadcast],
            activities=world.all(),
        ):
            for system in SYSTEMS:
                walls, activities, history_events, history_bytes = [], [], [], []
                for round_ in range(cycles):
                    for event, where in inbox_events(system, events, round_):
                        fields: dict[Any, Any] = {"event": event.model_dump_json(), **where}
                        await store.xadd(keys.world_inbox(system), fields)
                    began = time.perf_counter()
                    handle = await env.client.start_workflow(
                        WORKFLOW_TYPES[system],
                        CycleInput(params=params),
                        id=f"{task_queue}-{system}-{round_}",
                        task_queue=task_queue,
                    )
                    await handle.result()
                    walls.append((time.perf_counter() - began) * 1000)
                    history = await handle.fetch_history()
                    activities.append(
                        sum(1 for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
                    )
                    history_events.append(len(history.events))
                    history_bytes.append(sum(e.ByteSize() for e in history.events))
                results[system] = {
                    "wall_ms_median": round(statistics.median(walls)),
                    "wall_ms_max": round(max(walls)),
                    "activities_per_cycle": max(activities),
                    "history_events_per_cycle": max(history_events),
                    "history_kib_per_cycle": round(max(history_bytes) / 1024, 1),
                }
    finally:
        await env.shutdown()
        async for key in store.scan_iter(match=f"{keys.prefix}*", count=1000):
            await store.delete(key)
        await store.aclose()
    return results


def show(results: dict[str, Any]) -> None:
    print(f"  world of {results['npcs']} NPCs, {results['events_per_cycle']} inbox events per cycle", flush=True)
    for system in SYSTEMS:
        figures = results[system]
        print(
            f"  {system + ' cycle':<20} {figures['wall_ms_median']} ms median (max {figures['wall_ms_max']}), "
            f"{figures['activities_per_cycle']} activities, {figures['history_events_per_cycle']} history events, "
            f"{figures['history_kib_per_cycle']} KiB of history",
            flush=True,
        )


async def main(arguments: argparse.Namespace) -> dict[str, Any]:
    print(f"command: python -m benchmarks.world_cycles --npcs {arguments.npcs} --events {arguments.events}")
    print(f"machine: {describe_load(machine_load())}", flush=True)
    results = await measure(arguments.npcs, arguments.events, arguments.cycles)
    show(results)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npcs", type=int, default=1000)
    parser.add_argument("--events", type=int, default=500, help="game events waiting in each inbox per cycle")
    parser.add_argument("--cycles", type=int, default=3, help="cycles measured per system")
    asyncio.run(main(parser.parse_args()))
