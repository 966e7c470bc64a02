"""Tiers and pruning on the real Redis: daily summaries, the salience floor, the hard cap, the
memories that matter kept, and a summarized day closed to an old activity run again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiworld.config import MemorySettings
from aiworld.memory.consolidation import consolidate, maybe_consolidate
from aiworld.memory.store import MemoryStore
from aiworld.models import Memory

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def episode(memory_id: str, hours_ago: float, importance: int = 3, kind: str = "observation") -> Memory:
    return Memory(
        memory_id=memory_id,
        kind=kind,
        text=f"I saw {memory_id}",
        importance=importance,
        about="player:1",
        created_at=NOW - timedelta(hours=hours_ago),
    )


async def test_old_days_become_summaries_and_recent_memories_stay_in_full(redis_client, keys):
    store = MemoryStore(redis_client, keys, MemorySettings(full_detail_hours=24, salience_floor=0))
    old = [episode(f"old-{index}", hours_ago=72 + index) for index in range(6)]
    recent = [episode(f"new-{index}", hours_ago=index) for index in range(3)]
    vow = episode("vow", hours_ago=80, importance=9)
    await store.remember_all("lina_baker", [*old, *recent, vow])

    result = await consolidate(store, "lina_baker", NOW)

    assert result.summarized == 6 and result.summaries == ["summary-2026-11-22"]
    ids = set(await store.all_ids("lina_baker"))
    assert ids == {"summary-2026-11-22", "new-0", "new-1", "new-2", "vow"}
    [(summary, vector)] = await store.load("lina_baker", ["summary-2026-11-22"])
    assert summary.kind == "summary" and sorted(summary.evidence) == sorted(m.memory_id for m in old)
    assert vector and "player:1" in summary.participants
    # What recall ranks from follows: the summary's cue and vector in, the summarized ones' out.
    assert set(await redis_client.hkeys(keys.memory_cues("lina_baker"))) == ids
    assert set(await redis_client.hkeys(keys.memory_vectors("lina_baker"))) == ids
    # A reset runs an old activity again: the summarized day takes nothing back.
    assert not await store.remember("lina_baker", old[0])
    assert await consolidate(store, "lina_baker", NOW) == result.model_copy(
        update={"summarized": 0, "summaries": [], "kept": result.kept}
    )


async def test_faded_memories_are_pruned_and_important_ones_kept(redis_client, keys):
    store = MemoryStore(redis_client, keys, MemorySettings(full_detail_hours=24, salience_floor=0.15))
    await store.remember_all(
        "lina_baker",
        [
            episode("faded", hours_ago=200, importance=2),
            episode("fresh", hours_ago=1, importance=2),
            episode("vow", hours_ago=200, importance=9),
            episode("insight", hours_ago=200, importance=2, kind="reflection"),
        ],
    )
    result = await consolidate(store, "lina_baker", NOW)
    # The faded episode's day became a summary, which faded too; the fresh one stays in full.
    assert (result.summarized, result.pruned) == (1, 1)
    assert set(await store.all_ids("lina_baker")) == {"fresh", "vow", "insight"}


async def test_the_hard_cap_holds_and_drops_the_least_salient_first(redis_client, keys):
    store = MemoryStore(
        redis_client, keys, MemorySettings(full_detail_hours=1000, salience_floor=0, max_memories_per_npc=20)
    )
    await store.remember_all("lina_baker", [episode(f"e{index}", hours_ago=index, importance=2) for index in range(30)])
    await store.remember("lina_baker", episode("vow", hours_ago=100, importance=10))
    assert await maybe_consolidate(store, "lina_baker", NOW) is not None
    ids = set(await store.all_ids("lina_baker"))
    # Down to a tenth below the cap, so that the next memories don't each consolidate again.
    assert len(ids) == 18 and "vow" in ids and "e0" in ids and "e27" not in ids and "e16" in ids
    await store.remember_all("lina_baker", [episode(f"n{index}", hours_ago=0, importance=2) for index in range(2)])
    # Once a day, unless over the cap again.
    assert await maybe_consolidate(store, "lina_baker", NOW) is None
    await store.remember("lina_baker", episode("n2", hours_ago=0, importance=2))
    assert await maybe_consolidate(store, "lina_baker", NOW) is not None
    assert len(await store.all_ids("lina_baker")) == 18
