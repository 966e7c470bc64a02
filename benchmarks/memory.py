"""Memory benchmark: recall latency by NPC memory count on both search paths, and what an NPC's
memory weighs in the state store after a simulated game month.

    python -m benchmarks.memory                 # 100, 1,000 and the cap's number of memories
    python -m benchmarks.memory --queries 500

Recall = `MemoryStore.search` with a query (embedded locally), end to end from the client:
candidates, loading, scoring. `in_process` runs on a plain Redis; `store` (FT.SEARCH KNN) on
valkey with the RediSearch module (both started here, from the dev extra's packages); `memori`
(where the memori extra is installed) is MemoriStore: Memori's recall (its model embeds the
query) over its tables in a SQLite file, the records on a plain Redis. `--only-memori` measures
just that path. Bytes are
`MEMORY USAGE` of every key of the NPC after 30 game days of about 40 memories a day, saved and
consolidated as the worker does. Nothing is asserted: this measures, the README quotes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shlex
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis.asyncio as redis

from aiworld.config import MemorySettings
from aiworld.memory import memori
from aiworld.memory.consolidation import maybe_consolidate
from aiworld.memory.store import MemoryStore
from aiworld.models import Memory
from aiworld.store.keys import Keys
from benchmarks.measure import describe_latency, latency_summary
from tests.processes import ServerProcess, redis_process, search_process

START = datetime(2026, 11, 1, 6, tzinfo=UTC)
PEOPLE = ["Aria", "Borin", "Dax", "Mira", "Tolan", "Sera", "Kade", "Lio"]
THINGS = ["blue herbs", "red potions", "fresh bread", "an old sword", "wheat", "fish", "a map", "jellopies"]
DOINGS = ["bought", "sold me", "asked about", "stole", "gave me", "complained about", "praised", "lost"]
PLACES = ["at the fountain", "by the south gate", "in the market", "near the church", "at the docks"]
MEMORIES_PER_DAY = 40


def line(rng: random.Random) -> str:
    return f"{rng.choice(PEOPLE)} {rng.choice(DOINGS)} {rng.choice(THINGS)} {rng.choice(PLACES)}"


def memory(rng: random.Random, memory_id: str, at: datetime) -> Memory:
    return Memory(
        memory_id=memory_id,
        kind=rng.choice(["observation", "conversation", "action"]),
        text=line(rng),
        importance=rng.choice([1, 2, 2, 3, 3, 4, 5, 6, 8]),
        valence=round(rng.uniform(-0.6, 0.6), 2),
        about=f"player:{150000 + rng.randrange(8)}",
        created_at=at,
    )


async def recall_latency(store: MemoryStore, npc_id: str, count: int, queries: int) -> dict[str, Any]:
    rng = random.Random(count)
    batch = [memory(rng, f"m{index}", START + timedelta(minutes=index)) for index in range(count)]
    for first in range(0, count, 200):
        await store.remember_all(npc_id, batch[first : first + 200])
    now = START + timedelta(minutes=count + 60)
    seconds = []
    for _ in range(queries):
        query = f"{rng.choice(THINGS)}?"
        began = time.perf_counter()
        await store.search(npc_id, now=now, query=query, about=f"player:{150000 + rng.randrange(8)}", limit=8)
        seconds.append(time.perf_counter() - began)
    return latency_summary(seconds)


async def memori_recall(directory: Path, queries: int, settings: MemorySettings, sizes: list[int]) -> dict[str, Any]:
    """Recall through Memori at each size; {} (and a line saying why) without the memori extra."""
    if memori.installed_version() is None:
        print("  recall memori: not measured, the memori extra is not installed (pip install '.[memori]')")
        return {}
    server = redis_process(directory / "redis-memori", sync_every_write=False)
    server.start()
    client = redis.Redis(port=server.port, decode_responses=True)
    database = f"sqlite:///{directory / 'memori.sqlite'}"
    store = await memori.open_memori_store(
        client,
        Keys("bench:memori:"),
        settings.model_copy(update={"backend": "memori", "memori_database_url": database}),
    )
    report: dict[str, Any] = {}
    try:
        for size in sizes:
            report[str(size)] = await recall_latency(store, f"npc_{size}", size, queries)
            print(f"  recall {'memori':>10}, {size:>5} memories: {describe_latency(report[str(size)])}")
    finally:
        await store.memori.close()
        await client.aclose()
        server.stop()
    return report


async def month_bytes(
    client: redis.Redis, keys: Keys, settings: MemorySettings, days: int = 30, per_day: int = MEMORIES_PER_DAY
) -> dict[str, Any]:
    """A game month of one NPC, saved and consolidated as the worker does; then its keys' bytes."""
    store = MemoryStore(client, keys, settings)
    rng = random.Random(30)
    npc_id = "month_npc"
    for day in range(days):
        for index in range(per_day):
            at = START + timedelta(days=day, minutes=index * 20)
            await store.remember(npc_id, memory(rng, f"d{day}-{index}", at))
            if index % 4 == 0:
                party = f"player:{150000 + rng.randrange(8)}"
                await store.adjust_relationship(npc_id, party, rng.randint(-5, 5), f"d{day}-{index}", "chat", at)
            await maybe_consolidate(store, npc_id, at)
    total, keys_counted, by_part = 0, 0, {"memories": 0, "relationships": 0, "change_ids": 0, "other": 0}
    async for key in client.scan_iter(match=f"{keys.prefix}*", count=1000):
        size = int(await client.memory_usage(key) or 0)
        part = (
            "change_ids"
            if ":change:" in key
            else "memories"
            if ":memor" in key
            else "relationships"
            if key.startswith(f"{keys.prefix}relationship")
            else "other"
        )
        by_part[part] += size
        total += size
        keys_counted += 1
    kept = await store.count(npc_id)
    return {
        "memories_kept": kept,
        "keys": keys_counted,
        "bytes": total,
        "bytes_by_part": by_part,
        "bytes_per_memory": round(by_part["memories"] / max(1, kept)),
    }


async def measure(
    directory: Path, queries: int = 200, settings: MemorySettings | None = None, *, only_memori: bool = False
) -> dict[str, Any]:
    settings = settings or MemorySettings()
    sizes = sorted({100, 1000, settings.max_memories_per_npc})
    report: dict[str, Any] = {"sizes": sizes, "queries": queries, "recall": {}}
    if memori_report := await memori_recall(directory, queries, settings, sizes):
        report["recall"]["memori"] = memori_report
    if only_memori:
        return report
    servers: dict[str, ServerProcess] = {
        "in_process": redis_process(directory / "redis", sync_every_write=False),
        "store": search_process(directory / "search"),
    }
    try:
        for path, server in servers.items():
            server.start()
            client = redis.Redis(port=server.port, decode_responses=True)
            report["recall"][path] = {}
            for size in sizes:
                store = MemoryStore(
                    client, Keys(f"bench:{path}:{size}:"), settings.model_copy(update={"vector_search": path})
                )
                report["recall"][path][str(size)] = await recall_latency(store, f"npc_{size}", size, queries)
                print(f"  recall {path:>10}, {size:>5} memories: {describe_latency(report['recall'][path][str(size)])}")
            if path == "in_process":
                report["month"] = await month_bytes(client, Keys("bench:month:"), settings)
                month = report["month"]
                print(
                    f"  after a game month: {month['memories_kept']} memories, {month['keys']} keys, "
                    f"{month['bytes'] / 1024:.0f} KiB per NPC ({month['bytes_per_memory']} bytes per memory); "
                    f"by part (KiB): {json.dumps({k: round(v / 1024) for k, v in month['bytes_by_part'].items()})}"
                )
            await client.aclose()
    finally:
        for server in servers.values():
            server.stop()
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200, help="recalls timed at each size")
    parser.add_argument("--out", type=Path, help="where to write the JSON")
    parser.add_argument("--only-memori", action="store_true", help="measure only the memori path")
    arguments = parser.parse_args(argv)
    print(f"command: {shlex.join(['python', '-m', 'benchmarks.memory', *sys.argv[1:]])}")
    directory = Path(tempfile.mkdtemp(prefix="aiworld-memory-bench-"))
    report = asyncio.run(measure(directory, arguments.queries, only_memori=arguments.only_memori))
    if arguments.out:
        arguments.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
