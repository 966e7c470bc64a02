"""Retrieval by meaning, recency, importance and emotion, on both search paths (the local Redis
searched in process, and FT.SEARCH KNN on a server with a search module)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from aiworld.memory.embeddings import cosine, local_embedding, to_text
from aiworld.memory.retrieval import Cue, InProcessSearch, StoreSearch, score
from aiworld.memory.store import embedded_text
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


@pytest.mark.parametrize(
    ("field", "damage", "logged"),
    [("json", "{not json", "skipping corrupt memory bad"), ("cue", "[1, 2, 3]", "skipping memory bad of lina_baker")],
)
async def test_a_damaged_record_or_cue_costs_only_its_memory(
    memory_store, search_path, keys, caplog, field, damage, logged
):
    store = memory_store()
    await store.remember("lina_baker", memory("good", "Dax bought blue herbs", hours_ago=1))
    await store.remember("lina_baker", memory("bad", "blue herbs again", hours_ago=1))
    await search_path[1].hset(keys.memory("lina_baker", "bad"), field, damage)
    found = await store.search("lina_baker", now=NOW, query="blue herbs", limit=5)
    assert [item.memory.memory_id for item in found] == ["good"]
    assert logged in caplog.text


def scattered_memories(count: int, seed: int = 7) -> list[Memory]:
    """Memories of every age, weight, feeling and party, on a few themes (so meaning matters)."""
    rng = random.Random(seed)
    themes = ["blue herbs for the apothecary", "bread at the market", "a poring ate my apples", "guild war news"]
    parties = ["player:1", "player:2", "npc:kafra", None]
    return [
        memory(
            f"m{index:03d}",
            f"{rng.choice(themes)} ({index})",
            hours_ago=rng.uniform(0, 200),
            importance=rng.randint(1, 10),
            valence=round(rng.uniform(-1, 1), 2),
            about=rng.choice(parties),
            participants=[party for party in parties[:3] if party and rng.random() < 0.2],
        )
        for index in range(count)
    ]


@pytest.mark.parametrize(("query", "about"), [("blue herbs?", "player:1"), (None, "npc:kafra"), ("guild war", None)])
async def test_a_recall_ranks_every_candidate_as_scoring_each_record_would(memory_store, query, about):
    """The cues rank: the result is what scoring the whole record of every candidate the search
    proposes (in process: every memory) and sorting would give."""
    store = memory_store()
    memories = {item.memory_id: item for item in scattered_memories(120)}
    await store.remember_all("lina_baker", list(memories.values()))
    found = await store.search("lina_baker", now=NOW, query=query, about=about, limit=8)
    query_vector = local_embedding(query) if query else None
    candidates = await (await store.vector_search()).candidates("lina_baker", query_vector)
    every = [
        score(
            memories[memory_id],
            local_embedding(embedded_text(memories[memory_id])),
            query_vector=query_vector,
            now=NOW,
            about=about,
            settings=store.settings,
        )
        for memory_id in candidates
    ]
    every.sort(key=lambda item: (-item.score, item.memory.memory_id))
    assert [(item.memory.memory_id, item.score) for item in found] == [
        (item.memory.memory_id, item.score) for item in every[:8]
    ]


async def test_a_record_written_before_cues_is_ranked_from_the_record_itself(memory_store, search_path, keys):
    store = memory_store()
    await store.remember_all("lina_baker", scattered_memories(30))
    before = await store.search("lina_baker", now=NOW, query="bread?", about="player:2", limit=8)
    for item in before[:3]:  # the winners lose their cues, as records of an older version have none
        await search_path[1].hdel(keys.memory("lina_baker", item.memory.memory_id), "cue")
    assert await store.search("lina_baker", now=NOW, query="bread?", about="player:2", limit=8) == before


async def test_a_damaged_or_foreign_vector_costs_its_memory_only_its_relevance(memory_store, search_path, keys):
    store = memory_store()
    await store.remember("lina_baker", memory("damaged", "blue herbs", hours_ago=1))
    await store.remember("lina_baker", memory("foreign", "blue herbs", hours_ago=1))
    await store.remember("lina_baker", memory("sound", "blue herbs", hours_ago=1))
    await search_path[1].hset(keys.memory("lina_baker", "damaged"), "vec", "not base64 at all!")
    await search_path[1].hset(keys.memory("lina_baker", "foreign"), "vec", to_text([0.5] * 128))
    found = {item.memory.memory_id: item for item in await store.search("lina_baker", now=NOW, query="blue herbs")}
    assert found["sound"].parts["relevance"] > 0.9
    assert found["damaged"].parts["relevance"] == found["foreign"].parts["relevance"] == 0.0


async def test_a_recall_reads_only_the_records_it_returns(memory_store, search_path, keys, caplog):
    """Losers are ranked from their cues: their records (here unreadable) are never parsed."""
    store = memory_store()
    memories = scattered_memories(60)
    await store.remember_all("lina_baker", memories)
    found = await store.search("lina_baker", now=NOW, query="guild war", limit=4)
    winners = {item.memory.memory_id for item in found}
    for item in memories:
        if item.memory_id not in winners:
            await search_path[1].hset(keys.memory("lina_baker", item.memory_id), "json", "{not json")
    assert await store.search("lina_baker", now=NOW, query="guild war", limit=4) == found
    assert "corrupt memory" not in caplog.text


def test_a_cue_says_what_ranking_takes_and_is_never_taken_for_a_record():
    item = memory(
        "m",
        "Aria said:",
        hours_ago=3,
        importance=7,
        valence=-0.5,
        about="player:1",
        participants=["player:1", "npc:kafra"],
    )
    cue = Cue.of(item)
    assert cue.parties == ("player:1", "npc:kafra") and cue.created_at == item.created_at.timestamp()
    assert Cue.parse("m", cue.dump()) == cue and cue.dump().startswith("[")
    for damaged in ("{}", "[1, 2]", '[1, 2, 3, "player:1"]', "[1, 2, 3, [4]]", "nonsense"):
        with pytest.raises(ValueError):
            Cue.parse("m", damaged)
