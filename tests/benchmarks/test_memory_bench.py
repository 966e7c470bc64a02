"""The memory benchmark's parts measure what they say, on small numbers (no timing asserted)."""

from __future__ import annotations

import pytest

from aiworld.config import MemorySettings
from aiworld.memory import memori
from aiworld.memory.store import MemoryStore
from benchmarks.memory import memori_recall, month_bytes, recall_latency


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


@pytest.mark.memori
async def test_recall_through_memori_is_timed_where_its_extra_is(tmp_path):
    report = await memori_recall(tmp_path, 3, MemorySettings(), [20])
    assert report["20"]["count"] == 3 and report["20"]["p50_ms"] is not None


@pytest.mark.skipif(memori.installed_version() is not None, reason="the Memori SDK is installed here")
async def test_without_the_memori_extra_its_recall_is_not_measured(tmp_path, capsys):
    assert await memori_recall(tmp_path, 3, MemorySettings(), [20]) == {}
    assert "not measured, the memori extra is not installed" in capsys.readouterr().out
