"""Retrieval by meaning, recency, importance and emotion, on both search paths (the local Redis
searched in process, and FT.SEARCH KNN on a server with a search module)."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from redis.client import NEVER_DECODE

from aiworld.config import MemorySettings
from aiworld.memory.embeddings import cosine, local_embedding, pack, to_text
from aiworld.memory.retrieval import (
    CUE_NUMBERS,
    PARTY_SEPARATOR,
    Cue,
    CueTable,
    InProcessSearch,
    Newest,
    StoreSearch,
    score,
)
from aiworld.memory.store import MemoryStore, embedded_text
from aiworld.models import Memory

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
NOT_A_NUMBER_CUE = np.array([(math.nan, 3, 0.0)], dtype=CUE_NUMBERS).tobytes() + PARTY_SEPARATOR


def json_cue(item: Memory) -> str:
    """The cue as an earlier version kept it in the memory's record."""
    cue = Cue.of(item)
    return json.dumps([cue.created_at, cue.importance, cue.valence, list(cue.parties)])


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
    ("damaged", "damage", "logged"),
    [
        ("record", "{not json", "skipping corrupt memory bad"),
        ("cue", b"short", "skipping memory bad of lina_baker: unreadable cue"),
        ("cue", NOT_A_NUMBER_CUE, "skipping memory bad of lina_baker: unreadable cue"),
        ("cue", b"\0" * CUE_NUMBERS.itemsize + b"player:1", "skipping memory bad of lina_baker: unreadable cue"),
    ],
)
async def test_a_damaged_record_or_cue_costs_only_its_memory(
    memory_store, search_path, keys, caplog, damaged, damage, logged
):
    store = memory_store()
    await store.remember("lina_baker", memory("good", "Dax bought blue herbs", hours_ago=1))
    await store.remember("lina_baker", memory("bad", "blue herbs again", hours_ago=1))
    if damaged == "record":
        await search_path[1].hset(keys.memory("lina_baker", "bad"), "json", damage)
    else:
        await search_path[1].hset(keys.memory_cues("lina_baker"), "bad", damage)
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
    if isinstance(candidates, Newest):
        candidates = await store.newest_ids("lina_baker", candidates.count)
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


async def test_past_its_cap_an_npc_recalls_from_its_newest_memories(redis_client, keys):
    """Between passing its cap and its next consolidation an NPC holds more memories than the
    cap: the search in process ranks the newest, as many as the cap (the store's own search
    proposes by meaning, whatever the cap)."""
    store = MemoryStore(redis_client, keys, MemorySettings(vector_search="in_process", max_memories_per_npc=20))
    memories = scattered_memories(30)
    await store.remember_all("lina_baker", memories)
    found = await store.search("lina_baker", now=NOW, query="guild war", limit=30)
    newest = sorted(memories, key=lambda item: item.created_at, reverse=True)[:20]
    assert {item.memory.memory_id for item in found} == {item.memory_id for item in newest}


@pytest.mark.parametrize("kept_in_record", [("cue", "vec"), ("vec",), ()])
async def test_a_memory_stored_by_an_older_version_is_ranked_the_same_and_moved(
    memory_store, search_path, keys, kept_in_record
):
    """Older versions kept a memory's cue and text vector in its record (older still: no cue, the
    record is its source; with no vector at all the memory has no relevance). A recall ranks it
    as the current layout would, and moves its cue and vector to the NPC's hashes."""
    store, client = memory_store(), search_path[1]
    memories = {item.memory_id: item for item in scattered_memories(30)}
    await store.remember_all("lina_baker", list(memories.values()))
    before = await store.search("lina_baker", now=NOW, query="bread?", about="player:2", limit=8)
    for item in before[:3]:  # the winners become records of an older version
        memory_id = item.memory.memory_id
        record = keys.memory("lina_baker", memory_id)
        if "cue" in kept_in_record:
            await client.hset(record, "cue", json_cue(memories[memory_id]))
        if "vec" in kept_in_record:
            await client.hset(record, "vec", to_text(local_embedding(embedded_text(memories[memory_id]))))
        await client.hdel(keys.memory_cues("lina_baker"), memory_id)
        await client.hdel(keys.memory_vectors("lina_baker"), memory_id)
    after = await store.search("lina_baker", now=NOW, query="bread?", about="player:2", limit=8)
    if "vec" in kept_in_record:
        assert after == before
    moved = [item.memory.memory_id for item in before[:3]]
    if "vec" not in kept_in_record:  # those three lost their meaning, and only that
        assert all(item.parts["relevance"] == 0 for item in after if item.memory.memory_id in moved)
    assert await client.execute_command("HMGET", keys.memory_cues("lina_baker"), *moved, **{NEVER_DECODE: True}) == [
        Cue.of(memories[memory_id]).pack() for memory_id in moved
    ]
    vectors_moved = [await client.hexists(keys.memory_vectors("lina_baker"), memory_id) for memory_id in moved]
    assert vectors_moved == ["vec" in kept_in_record] * 3
    assert await store.search("lina_baker", now=NOW, query="bread?", about="player:2", limit=8) == after


async def test_a_damaged_or_foreign_vector_costs_its_memory_only_its_relevance(memory_store, search_path, keys):
    store = memory_store()
    await store.remember("lina_baker", memory("damaged", "blue herbs", hours_ago=1))
    await store.remember("lina_baker", memory("foreign", "blue herbs", hours_ago=1))
    await store.remember("lina_baker", memory("not-a-number", "blue herbs", hours_ago=1))
    await store.remember("lina_baker", memory("sound", "blue herbs", hours_ago=1))
    await search_path[1].hset(keys.memory_vectors("lina_baker"), "damaged", "not float32")
    await search_path[1].hset(keys.memory_vectors("lina_baker"), "not-a-number", b"\xff\xff\xff\xff" * 256)
    await search_path[1].hset(keys.memory_vectors("lina_baker"), "foreign", pack([0.5] * 128))
    found = {item.memory.memory_id: item for item in await store.search("lina_baker", now=NOW, query="blue herbs")}
    assert found["sound"].parts["relevance"] > 0.9
    assert found["damaged"].parts["relevance"] == found["foreign"].parts["relevance"] == 0.0
    assert found["not-a-number"].parts["relevance"] == 0.0


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


def test_a_cue_keeps_what_ranking_takes_and_a_damaged_one_is_told():
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
    packed = cue.pack()
    numbers = np.frombuffer(packed[: CUE_NUMBERS.itemsize], dtype=CUE_NUMBERS)[0]
    assert (numbers["created_at"], numbers["importance"], numbers["valence"]) == (cue.created_at, 7, -0.5)
    assert packed[CUE_NUMBERS.itemsize :] == b"\x1fplayer:1\x1fnpc:kafra\x1f"
    unseparated = packed[: CUE_NUMBERS.itemsize] + b"player:1"
    table = CueTable(["good", "short", "unseparated", "nan"], [packed, packed[:10], unseparated, NOT_A_NUMBER_CUE])
    assert table.unreadable() == ["short", "unseparated", "nan"]
    # What an earlier version kept in the memory's record: a JSON list.
    assert Cue.of_row("m", json.loads(json_cue(item))) == cue
    for damaged in ({}, [1, 2], [1, 2, 3, "player:1"], [1, 2, 3, [4]], "nonsense"):
        with pytest.raises(ValueError):
            Cue.of_row("m", damaged)
