"""The memory benchmark's parts measure what they say, on small numbers (no timing asserted)."""

from __future__ import annotations

from aiworld.config import MemorySettings
from aiworld.memory.store import MemoryStore
from benchmarks.memory import month_bytes, recall_latency


async def test_recall_latency_times_every_query(redis_client, keys):
    store = MemoryStore(redis_client, keys, MemorySettings(vector_search="in_process"))
    summary = await recall_latency(store, "bench_npc", 30, 7)
    assert summary["count"] == 7 and summary["p50_ms"] is not None
    assert await store.count("bench_npc") == 30


async def test_a_short_month_is_consolidated_and_weighed_by_part(redis_client, keys):
    settings = MemorySettings(full_detail_hours=24, max_memories_per_npc=20)
    month = await month_bytes(redis_client, keys, settings, days=4, per_day=12)
    assert month["memories_kept"] <= 20 and month["bytes"] == sum(month["bytes_by_part"].values())
    assert month["bytes_by_part"]["memories"] > 0 and month["bytes_by_part"]["change_ids"] > 0
