"""Retrieval by meaning, recency, importance and emotion, on both search paths (the local Redis
searched in process, and FT.SEARCH KNN on a server with a search module)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiworld.memory.embeddings import cosine, local_embedding
from aiworld.memory.retrieval import InProcessSearch, StoreSearch
from aiworld.models import Memory

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def memory(memory_id: str, text: str, hours_ago: float, importance: int = 3, valence: float = 0.0, **more) -> Memory:
    return Memory(
        memory_id=memory_id,
        text=text,
        importance=importance,
        valence=valence,
        created_at=NOW - timedelta(hours=hours_ago),
        **more,
    )


def test_the_local_embedding_matches_a_question_to_its_memory():
    question = local_embedding("blue herbs?")
    herbs = local_embedding("Dax bought a bundle of blue herbs from me")
    bread = local_embedding("A traveller asked for fresh bread")
    assert cosine(question, herbs) > 0.3 > cosine(question, bread)
    assert local_embedding("blue herbs?") == question  # the same in every process


async def test_the_search_path_is_the_one_asked_for(memory_store, search_path):
    store = memory_store()
    expected = InProcessSearch if search_path[0] == "in_process" else StoreSearch
    assert isinstance(await store.vector_search(), expected)


async def test_the_herbs_memory_ranks_above_a_fresher_unrelated_one(memory_store):
    store = memory_store()
    await store.remember("lina_baker", memory("herbs", "Dax bought blue herbs from me", hours_ago=30))
    await store.remember("lina_baker", memory("rain", "It rained on the market square", hours_ago=1))
    await store.remember("lina_baker", memory("bread", "I baked forty loaves of bread", hours_ago=2))
    found = await store.search("lina_baker", now=NOW, query="blue herbs?", limit=3)
    assert [item.memory.memory_id for item in found][0] == "herbs"
    assert found[0].parts["relevance"] > found[1].parts["relevance"]
    assert found[0].parts["recency"] < found[1].parts["recency"]  # it won on meaning, not freshness
    assert set(found[0].parts) == {"relevance", "recency", "importance", "salience", "about"}


async def test_decay_importance_and_salience_each_move_the_order_as_weighted(memory_store):
    fresh = memory("fresh", "A cart passed by", hours_ago=1, importance=2)
    weighty = memory("weighty", "The mayor named me guild master", hours_ago=100, importance=9)
    painful = memory("painful", "A thief broke my window", hours_ago=100, importance=2, valence=-1.0)
    only = {"relevance_weight": 0, "about_weight": 0}

    async def order(**weights) -> list[str]:
        store = memory_store(**only, **weights)
        for item in (fresh, weighty, painful):
            await store.remember("lina_baker", item)
        return [found.memory.memory_id for found in await store.search("lina_baker", now=NOW, limit=3)]

    assert (await order(recency_weight=1, importance_weight=0, salience_weight=0))[0] == "fresh"
    assert (await order(recency_weight=1, importance_weight=3, salience_weight=0))[0] == "weighty"
    assert (await order(recency_weight=1, importance_weight=0, salience_weight=3))[0] == "painful"
    # A slower decay lets the old memories keep up with the fresh one.
    slow = await order(recency_weight=1, importance_weight=1, salience_weight=0, recency_decay_per_hour=0.9999)
    assert slow[0] == "weighty" and slow.index("fresh") < slow.index("painful")


async def test_a_memory_about_the_party_ranks_first_for_them(memory_store):
    store = memory_store()
    await store.remember("lina_baker", memory("about-aria", "Aria said:", hours_ago=48, about="player:1"))
    await store.remember("lina_baker", memory("news", "The bridge was mended", hours_ago=2, importance=6))
    found = await store.search("lina_baker", now=NOW, about="player:1", limit=2)
    assert found[0].memory.memory_id == "about-aria" and found[0].parts["about"] == 1.0


async def test_a_damaged_record_costs_only_itself(memory_store, search_path, keys):
    store = memory_store()
    await store.remember("lina_baker", memory("good", "Dax bought blue herbs", hours_ago=1))
    await store.remember("lina_baker", memory("bad", "blue herbs again", hours_ago=1))
    await search_path[1].hset(keys.memory("lina_baker", "bad"), "json", "{not json")
    found = await store.search("lina_baker", now=NOW, query="blue herbs", limit=5)
    assert [item.memory.memory_id for item in found] == ["good"]
