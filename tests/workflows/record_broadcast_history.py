"""Record the histories of a WorldBroadcastWorkflow for the replay test.

    .venv/bin/python -m tests.workflows.record_broadcast_history

fans news out to a map of 7 listed NPCs (two living, five never started), three per page and two
pages per run, on a throw-away dev server, and writes the history of each run (continue-as-new
chains them) to tests/workflows/histories/. Record new files whenever the workflow changes on
purpose, and keep the old ones: fan-outs in flight still have those histories.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from pathlib import Path

import redis.asyncio as redis
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from aiworld.config import CoordinatorSettings
from aiworld.memory.store import MemoryStore
from aiworld.npc import search_attributes
from aiworld.npc.control import ensure_npc_started
from aiworld.npc.offline_policy import OfflineDecisionMaker
from aiworld.ops import binaries
from aiworld.ops.worker import build_worker
from aiworld.store.keys import Keys
from aiworld.world.news import NewsSource, Scope, WorldNews
from tests.conftest import demo_profile
from workflows.world_broadcast import BROADCAST_WORKFLOW_TYPE, BroadcastInput, broadcast_workflow_id

HISTORIES = Path(__file__).parent / "histories"


async def record() -> list[Path]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(binaries.temporal_cli()),
        data_converter=pydantic_data_converter,
        search_attributes=list(search_attributes.ALL),
    )
    store = redis.Redis.from_url("redis://127.0.0.1:6379/0", decode_responses=True)
    keys = Keys(f"record:{uuid.uuid4().hex[:8]}:")
    memory = MemoryStore(store, keys)
    histories: list[WorkflowHistory] = []
    try:
        async with build_worker(
            env.client, "record", store, keys, OfflineDecisionMaker(), CoordinatorSettings(page_size=3)
        ):
            for index in range(7):
                profile = demo_profile("marlo_sailor").model_copy(update={"npc_id": f"sailor_{index}"})
                await memory.publish_npc(profile, {})
                if index < 2:
                    await ensure_npc_started(env.client, profile, "record")
            news = WorldNews(
                news_id="record-tide",
                source=NewsSource.ENVIRONMENT,
                scope=Scope(kind="map", map="izlude"),
                text="A spring tide floods the docks",
                importance=3,
                facts={"weather": "fog"},
            )
            handle = await env.client.start_workflow(
                BROADCAST_WORKFLOW_TYPE,
                BroadcastInput(**news.model_dump(), pages_per_run=2),
                id=broadcast_workflow_id(news.news_id),
                task_queue="record",
            )
            await handle.result()
            run_id: str | None = None
            while True:
                history = await env.client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
                histories.append(history)
                run_id = history.events[0].workflow_execution_started_event_attributes.continued_execution_run_id
                if not run_id:
                    break
            for index in range(2):
                await env.client.get_workflow_handle(f"npc-sailor_{index}").terminate("recorded")
    finally:
        async for key in store.scan_iter(match=f"{keys.prefix}*"):
            await store.delete(key)
        await store.aclose()
        await env.shutdown()
    HISTORIES.mkdir(exist_ok=True)
    paths = []
    for number, history in enumerate(reversed(histories), start=1):
        path = HISTORIES / f"world_broadcast_{datetime.now():%Y%m%d}_run{number}.json"
        path.write_text(history.to_json())
        paths.append(path)
    return paths


if __name__ == "__main__":
    print(f"recorded {asyncio.run(record())}")
