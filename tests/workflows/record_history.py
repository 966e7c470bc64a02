"""Record a history of NpcLifeWorkflow for the replay test.

    .venv/bin/python -m tests.workflows.record_history [SUFFIX]

runs one scripted stretch of an NPC's life (sleep between events, arrivals, an attack, news,
dialogue, routine steps and a continue-as-new) on a throw-away dev server and writes its history to
tests/workflows/histories/. Record a new file whenever the workflow changes on purpose (guarded
by `workflow.patched`), and keep the old ones: running NPCs still have those histories.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import datetime
from pathlib import Path

import redis.asyncio as redis
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from aiworld.models import GameEvent, PlayerRef, TalkReply, TalkTurn
from aiworld.npc import search_attributes
from aiworld.npc.offline_policy import OfflineDecisionMaker
from aiworld.ops import binaries
from aiworld.ops.worker import build_worker
from aiworld.store.keys import Keys
from aiworld.temporal import npc_workflow_id
from aiworld.world.directory import NpcDirectory
from tests.conftest import demo_profile
from workflows.npc_state import NpcLifeInput

HISTORIES = Path(__file__).parent / "histories"
ARIA = PlayerRef(char_id=150001, name="Aria", level=34, job_class=4)


async def record(suffix: str = "") -> Path:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(binaries.temporal_cli()),
        data_converter=pydantic_data_converter,
        search_attributes=list(search_attributes.ALL),
    )
    store = redis.Redis.from_url("redis://127.0.0.1:6379/0", decode_responses=True)
    keys = Keys(f"record:{uuid.uuid4().hex[:8]}:")
    router = OfflineDecisionMaker()
    profile = demo_profile("gareth_guard")
    try:
        async with build_worker(env.client, "record", store, keys, router):
            handle = await env.client.start_workflow(
                "NpcLifeWorkflow",
                NpcLifeInput(profile=profile, history_length_limit=150),
                id=npc_workflow_id(profile.npc_id),
                task_queue="record",
            )
            # Unimportant for a while: it sleeps between events (settling publishes search attributes).
            await handle.signal("configure", {"importance": 3})
            await handle.signal(
                "game_event", GameEvent(event_id="r0", kind="world_event", text="Rain over Prontera", importance=6)
            )
            await asyncio.sleep(2)
            await handle.signal("configure", {"importance": profile.importance})
            await handle.signal("game_event", GameEvent(event_id="r1", kind="player_nearby", player=ARIA))
            await handle.execute_update(
                "talk", TalkTurn(turn_id="r2", player=ARIA, text="Hello guard, any news?"), result_type=TalkReply
            )
            await handle.signal("game_event", GameEvent(event_id="r3", kind="player_attacked", player=ARIA))
            await handle.signal(
                "game_event", GameEvent(event_id="r4", kind="world_event", text="Orcs gather near Geffen", importance=8)
            )
            # Enough to reflect once (patch social-memory); a neighbour to meet, who no longer lives.
            await NpcDirectory(store, keys).place(
                "lina_baker", profile.map, profile.x + 2, profile.y, "merchants_guild"
            )
            for index in range(12):
                await handle.signal(
                    "game_event", GameEvent(event_id=f"r-hit-{index}", kind="player_attacked", player=ARIA)
                )
                await asyncio.sleep(0.3)
            await handle.signal("configure", {"importance": 9})
            await asyncio.sleep(12)  # a couple of routine steps on the cadence timer
            for index in range(40):
                await handle.signal(
                    "game_event",
                    GameEvent(event_id=f"r-news-{index}", kind="world_event", text="Market day", importance=1),
                )
            await asyncio.sleep(3)
            await handle.signal("game_event", GameEvent(event_id="r5", kind="player_left", player=ARIA))
            await asyncio.sleep(2)
            # The history of the first run (the one that continued as new) is the richest.
            first = env.client.get_workflow_handle(handle.id, run_id=handle.result_run_id)
            history = await first.fetch_history()
            await handle.terminate("recorded")
    finally:
        await router.aclose()
        async for key in store.scan_iter(match=f"{keys.prefix}*"):
            await store.delete(key)
        await store.aclose()
        await env.shutdown()
    HISTORIES.mkdir(exist_ok=True)
    path = HISTORIES / f"npc_life_{datetime.now():%Y%m%d}{suffix}.json"
    if path.exists():
        raise FileExistsError(f"{path} holds a recorded history: give another suffix")
    path.write_text(history.to_json())
    return path


if __name__ == "__main__":
    print(f"recorded {asyncio.run(record(*sys.argv[1:2]))}")
