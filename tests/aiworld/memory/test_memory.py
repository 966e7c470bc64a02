"""Memories and relationships on the real Redis: idempotent writes and sensible recall."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiworld.memory.store import MemoryStore
from aiworld.models import Memory

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def memory(memory_id: str, hours_ago: float, importance: int = 3, about: str | None = None) -> Memory:
    return Memory(
        memory_id=memory_id,
        text=memory_id,
        importance=importance,
        about=about,
        created_at=NOW - timedelta(hours=hours_ago),
    )


async def test_a_memory_is_stored_once(redis_client, keys):
    store = MemoryStore(redis_client, keys)
    assert await store.remember("lina_baker", memory("1-event-0", 1))
    assert not await store.remember("lina_baker", memory("1-event-0", 1))
    assert await store.count("lina_baker") == 1


async def test_recall_ranks_the_party_recent_and_important_first(redis_client, keys):
    store = MemoryStore(redis_client, keys)
    await store.remember("lina_baker", memory("old-trivia", 300, importance=1))
    await store.remember("lina_baker", memory("recent-trivia", 1, importance=1))
    await store.remember("lina_baker", memory("about-aria", 48, importance=3, about="player:1"))
    await store.remember("lina_baker", memory("big-news", 2, importance=9))
    recalled = [m.memory_id for m in await store.recall("lina_baker", now=NOW, about="player:1", limit=3)]
    assert recalled[0] == "about-aria"
    assert "big-news" in recalled and "old-trivia" not in recalled


async def test_relationship_changes_apply_once_and_stay_in_range(redis_client, keys):
    store = MemoryStore(redis_client, keys)
    assert await store.adjust_relationship("gareth_guard", "player:1", -15, "ev-1", "attacked") == -15
    assert await store.adjust_relationship("gareth_guard", "player:1", -15, "ev-1", "attacked") == -15
    for index in range(10):
        await store.adjust_relationship("gareth_guard", "player:1", -15, f"ev-{index + 2}", "attacked")
    assert await store.relationships("gareth_guard", ["player:1", "player:2"]) == {"player:1": -100}
