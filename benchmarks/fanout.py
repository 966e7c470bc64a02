"""Fan-out of one world event to every NPC: seconds until each NPC has it, and how recipients are found.

    python -m benchmarks.fanout                 # 1,000 NPCs on the dev-server stack as processes
    python -m benchmarks.fanout --npcs 200

The stack of `make bench` (Temporal dev server with its SQLite file, Redis, `aiworld worker`,
`aiworld api`, as processes). NPCs register through the API over five maps; then one
`POST /ai/world/event` with the world scope. Printed: the API's answer time; seconds until the
coordinator has signalled every NPC (its workflow ends: each NPC's history holds the event);
seconds until every NPC has processed it (its memory of the news is in the state store); and the
cost of finding one map's recipients in the directory against Temporal's visibility (`NpcMap`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio as redis

from aiworld.store.keys import Keys
from aiworld.world.directory import NpcDirectory
from benchmarks.measure import describe_load, machine_load
from benchmarks.pipeline import MAPS, Driver, PipelineStack
from workflows.world_broadcast import BroadcastReport, broadcast_workflow_id

NEWS_TEXT = "The harvest fair opens at noon"


def show(label: str, value: str) -> None:
    print(f"  {label:<50} {value}", flush=True)


async def npcs_who_remember(store: redis.Redis, keys: Keys, npc_ids: list[str]) -> int:
    """NPCs whose latest memories include the news (written when the NPC processed it)."""
    async with store.pipeline(transaction=False) as pipe:
        for npc_id in npc_ids:
            pipe.zrevrange(keys.memory_index(npc_id), 0, 4)
        latest = await pipe.execute()
    async with store.pipeline(transaction=False) as pipe:
        for npc_id, ids in zip(npc_ids, latest, strict=True):
            for memory_id in ids:
                pipe.hget(keys.memory(npc_id, memory_id.decode()), "json")
        memories = await pipe.execute()
    texts = iter(memories)
    return sum(
        any(text is not None and NEWS_TEXT.encode() in text for text in [next(texts) for _ in ids]) for ids in latest
    )


async def resolution_costs(driver: Driver, store: redis.Redis, keys: Keys, repeats: int = 20) -> dict[str, Any]:
    """Median ms to list one map's NPCs: the directory's hash, and a visibility query on NpcMap."""
    directory, client = NpcDirectory(store, keys), await driver.temporal()
    directory_ms, visibility_ms, found = [], [], {}
    for _ in range(repeats):
        began = time.perf_counter()
        found["directory"] = len(await directory.on_map(MAPS[0]))
        directory_ms.append((time.perf_counter() - began) * 1000)
        began = time.perf_counter()
        query = f"NpcMap = '{MAPS[0]}' AND ExecutionStatus = 'Running' AND WorkflowType = 'NpcLifeWorkflow'"
        found["visibility"] = len([wf.id async for wf in client.list_workflows(query, page_size=1000)])
        visibility_ms.append((time.perf_counter() - began) * 1000)
    return {
        "map": MAPS[0],
        "npcs_found_directory": found["directory"],
        "npcs_found_visibility": found["visibility"],
        "directory_ms_p50": round(sorted(directory_ms)[len(directory_ms) // 2], 2),
        "visibility_ms_p50": round(sorted(visibility_ms)[len(visibility_ms) // 2], 2),
    }


async def measure(directory: Path, npcs: int) -> dict[str, Any]:
    stack = PipelineStack(directory / "fanout")
    driver = Driver(stack, npcs)
    result: dict[str, Any] = {"npcs": npcs}
    try:
        stack.start()
        result["registration"] = await driver.register_all()
        show("registration", f"{npcs} NPCs in {result['registration']['seconds']} s")
        await driver.wait_until_npcs_answer()
        keys = Keys("")
        store = redis.Redis(port=stack.redis.port)
        try:
            result["recipients"] = await resolution_costs(driver, store, keys)
            show("one map's recipients: directory (ms, p50)", str(result["recipients"]["directory_ms_p50"]))
            show("one map's recipients: visibility NpcMap (ms, p50)", str(result["recipients"]["visibility_ms_p50"]))
            show(
                "NPCs found: directory / visibility",
                f"{result['recipients']['npcs_found_directory']} / {result['recipients']['npcs_found_visibility']}",
            )

            result["load_before"] = describe_load(machine_load())
            body = {
                "scope": {"kind": "world"},
                "event": {"event_id": "bench-fair", "kind": "world_event", "text": NEWS_TEXT, "importance": 3},
            }
            began = time.monotonic()
            status, answer = await driver.call("POST", "/ai/world/event", first=True, json=body)
            result["api_answer_seconds"] = round(time.monotonic() - began, 3)
            if status != 202:
                raise RuntimeError(f"POST /ai/world/event answered {status}: {answer}")
            result["recipients_answered"] = answer["recipients"]
            client = await driver.temporal()
            handle = client.get_workflow_handle(broadcast_workflow_id("bench-fair"), result_type=BroadcastReport)
            report = await handle.result()
            result["seconds_until_every_npc_signalled"] = round(time.monotonic() - began, 2)
            result["delivered"] = report.delivered
            while (remembered := await npcs_who_remember(store, keys, driver.npc_ids)) < npcs:
                if time.monotonic() - began > 1800:
                    break
                await asyncio.sleep(0.5)
            result["seconds_until_every_npc_processed"] = round(time.monotonic() - began, 2)
            result["npcs_processed"] = remembered
            result["load_after"] = describe_load(machine_load())
        finally:
            await store.aclose()
        return result
    finally:
        await driver.aclose()
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npcs", type=int, default=1000)
    arguments = parser.parse_args()
    command = shlex.join(["python", "-m", "benchmarks.fanout", *sys.argv[1:]])
    print(f"command: {command}\nmachine: {describe_load(machine_load())}", flush=True)
    result = asyncio.run(measure(Path(tempfile.mkdtemp(prefix="aiworld-fanout-")), arguments.npcs))
    show(
        "POST /ai/world/event answered (s)",
        f"{result['api_answer_seconds']} ({result['recipients_answered']} recipients)",
    )
    show("every NPC signalled (s)", f"{result['seconds_until_every_npc_signalled']} ({result['delivered']} delivered)")
    show(
        "every NPC processed it (s)", f"{result['seconds_until_every_npc_processed']} ({result['npcs_processed']} NPCs)"
    )
    show("machine load before / after", f"{result['load_before']} / {result['load_after']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
