"""The relationship graph on the real Redis: once per change id (kept with a TTL), a type from
score and history, a bounded history, the time of the last interaction."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from aiworld.config import MemorySettings
from aiworld.memory.relationships import RelationshipMove, Relationships, relationship_type
from aiworld.memory.store import MemoryStore

AT = datetime(2026, 11, 25, 12, tzinfo=UTC)


def test_the_type_follows_score_and_history():
    assert relationship_type(70, 1) == "friend"
    assert relationship_type(30, 1) == "friendly"
    assert relationship_type(0, 1) == "neutral"
    assert relationship_type(0, 9) == "acquaintance"
    assert relationship_type(-30, 2) == "rival"
    assert relationship_type(-80, 2) == "enemy"


async def test_changes_apply_once_with_an_expiring_id_and_a_bounded_history(redis_client, keys):
    graph = Relationships(redis_client, keys, change_ttl_seconds=3600, history_length=3)
    assert await graph.adjust("gareth_guard", "npc:lina_baker", 20, "chat-1", "gossip", AT) == 20
    assert await graph.adjust("gareth_guard", "npc:lina_baker", 20, "chat-1", "gossip", AT) == 20
    ttl = await redis_client.ttl(keys.relationship_change("gareth_guard", "npc:lina_baker", "chat-1"))
    assert 0 < ttl <= 3600
    for index in range(5):
        await graph.adjust(
            "gareth_guard", "npc:lina_baker", 10, f"chat-{index + 2}", "gossip", AT + timedelta(hours=index)
        )
    [relationship] = await graph.details("gareth_guard")
    assert relationship.score == 70 and relationship.type == "friend" and relationship.interactions == 6
    assert [entry["change"] for entry in relationship.history] == ["chat-6", "chat-5", "chat-4"]
    assert relationship.last_interaction == (AT + timedelta(hours=4)).isoformat()
    stored = await redis_client.hgetall(keys.relationship("gareth_guard", "npc:lina_baker"))
    assert stored["type"] == "friend" and len(json.loads(stored["history"])) == 3


async def test_factions_have_relationships_too(redis_client, keys):
    store = MemoryStore(redis_client, keys, MemorySettings())
    graph = store.relationship_graph
    await graph.adjust("faction:prontera_guard", "faction:orc_clan", -70, "raid-1", "border raid", AT)
    await store.adjust_relationship("gareth_guard", "player:1", -30, "attack-1", "attacked", AT)
    assert await graph.scores("faction:prontera_guard") == {"faction:orc_clan": -70}
    assert await graph.owners() == ["faction:prontera_guard", "gareth_guard"]
    [relationship] = await graph.details("gareth_guard")
    assert relationship.type == "rival"


async def test_a_damaged_score_is_skipped_when_read_and_restarted_when_written(redis_client, keys):
    graph = Relationships(redis_client, keys, change_ttl_seconds=60, history_length=3)
    await redis_client.hset(keys.relationships("lina_baker"), "player:1", "very angry")
    assert await graph.scores("lina_baker", ["player:1"]) == {}
    await redis_client.hset(keys.relationship("lina_baker", "player:1"), "history", "{broken")
    assert await graph.adjust("lina_baker", "player:1", 5, "gift-1", "gift", AT) == 5
    [relationship] = await graph.details("lina_baker")
    assert [entry["change"] for entry in relationship.history] == ["gift-1"]


async def test_moves_in_one_batch_each_apply_once_and_store_the_type_the_rules_give(redis_client, keys):
    """The store's script sets the type from the thresholds `relationship_type` reads: both agree
    at every boundary, for each move of a batch, and a move run again changes nothing."""
    graph = Relationships(redis_client, keys, change_ttl_seconds=3600, history_length=3)
    scores = [60, 59, 25, 24, -25, -24, -60, -59]
    moves = [RelationshipMove("lina_baker", f"player:{score}", score, f"c{score}", "test", AT) for score in scores]
    assert await graph.adjust_all(moves) == scores
    assert await graph.adjust_all(moves) == scores  # a retried batch: nothing moves twice
    for score in scores:
        stored = await redis_client.hgetall(keys.relationship("lina_baker", f"player:{score}"))
        assert stored["type"] == relationship_type(score, 1), score
        assert stored["interactions"] == "1"
    for index in range(4):  # the fifth dealing makes a neutral party an acquaintance
        await graph.adjust("lina_baker", "player:-24", 0, f"chat-{index}", "chat", AT)
    stored = await redis_client.hgetall(keys.relationship("lina_baker", "player:-24"))
    assert stored["type"] == relationship_type(-24, 5) == "acquaintance"
