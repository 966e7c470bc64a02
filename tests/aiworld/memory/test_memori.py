"""Memori as the memory backend, for real: the Memori SDK with its own embedding model (loaded from the
model package, offline: tests/conftest.py refuses any connection beyond this machine), its tables
in a SQLite file and in a database of the test's own on the real MariaDB, the records in the
real Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
import redis.asyncio as redis

from aiworld.config import MemorySettings
from aiworld.memory.memori import (
    MemoriBackend,
    MemoriStore,
    MemoriUnavailable,
    fact_of,
    memory_id_of,
    model_directory,
    open_memori_store,
    redacted,
)
from aiworld.memory.store import MemoryStore
from aiworld.models import Memory
from aiworld.store.keys import Keys
from tests.conftest import create_database, drop_database, mariadb_url

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def memory(memory_id: str, text: str, hours_ago: float, importance: int = 3, **more) -> Memory:
    return Memory(
        memory_id=memory_id, text=text, importance=importance, created_at=NOW - timedelta(hours=hours_ago), **more
    )


@pytest_asyncio.fixture(loop_scope="session")
async def memori_store(memori_database: str, redis_client: redis.Redis, keys: Keys) -> AsyncIterator[MemoriStore]:
    store = await open_memori_store(redis_client, keys, MemorySettings(memori_database_url=memori_database))
    try:
        yield store
    finally:
        await store.memori.close()


@pytest.mark.memori
async def test_the_herbs_memory_ranks_above_a_fresher_unrelated_one(memori_store):
    await memori_store.remember("lina_baker", memory("herbs", "Dax bought a bundle of blue herbs from me", 30))
    await memori_store.remember("lina_baker", memory("rain", "It rained on the market square", 1))
    await memori_store.remember("lina_baker", memory("bread", "I baked forty loaves of bread", 2))
    found = await memori_store.search("lina_baker", now=NOW, query="blue herbs?", limit=3)
    assert [item.memory.memory_id for item in found][0] == "herbs"
    assert found[0].parts["relevance"] > max(item.parts["relevance"] for item in found[1:])
    assert found[0].parts["recency"] < found[1].parts["recency"]  # it won on meaning, not freshness
    assert (await memori_store.vector_search()).name == "memori"
    # By meaning, not by words: no word of the question is in the memory it finds.
    found = await memori_store.search("lina_baker", now=NOW, query="Was there bad weather?", limit=3)
    assert found[0].memory.memory_id == "rain"
    # Memori holds the text and the vector; the state store the record, without a vector.
    assert {memory_id_of(fact) for fact, _ in await memori_store.memori.facts("lina_baker")} == {
        "herbs",
        "rain",
        "bread",
    }
    assert [vector for _, vector in await memori_store.load("lina_baker", ["herbs"])] == [[]]


@pytest.mark.memori
async def test_attribution_keeps_each_npc_to_its_own_memories(memori_store):
    await memori_store.remember("lina_baker", memory("herbs", "Dax bought blue herbs from me", 3))
    await memori_store.remember("gareth_guard", memory("sword", "A thief stole my sword at the gate", 3))
    assert [memory_id_of(f) for f, _ in await memori_store.memori.facts("lina_baker")] == ["herbs"]
    assert [memory_id_of(f) for f, _ in await memori_store.memori.facts("gareth_guard")] == ["sword"]
    found = await memori_store.search("lina_baker", now=NOW, query="Who stole the sword?")
    assert [item.memory.memory_id for item in found] == ["herbs"] and found[0].parts["relevance"] < 0.3
    found = await memori_store.search("gareth_guard", now=NOW, query="Who stole the sword?")
    assert [item.memory.memory_id for item in found] == ["sword"] and found[0].parts["relevance"] > 0.5


@pytest.mark.memori
async def test_a_memory_written_again_is_one_fact(memori_store, redis_client, keys):
    memories = [memory("herbs", "Dax bought blue herbs from me", 3), memory("rain", "It rained all day", 2)]
    assert await memori_store.remember_all("lina_baker", memories) == memories
    assert await memori_store.remember_all("lina_baker", memories) == []  # the activity ran again
    assert sorted(await memori_store.memori.facts("lina_baker")) == sorted((fact_of(m), 2) for m in memories)
    # A run that stopped after the record and before Memori: the run again gives Memori its fact.
    late = memory("late", "The baker's oven broke", 1)
    await MemoryStore(redis_client, keys).remember("lina_baker", late)
    assert await memori_store.remember_all("lina_baker", [late]) == []
    assert (fact_of(late), 1) in await memori_store.memori.facts("lina_baker")


@pytest.mark.memori
async def test_a_memory_refused_by_its_closed_day_gets_no_fact(memori_store):
    await memori_store.close_days_until("lina_baker", NOW - timedelta(hours=24))
    assert await memori_store.remember_all("lina_baker", [memory("old", "An old day", 30)]) == []
    assert await memori_store.memori.facts("lina_baker") == []


@pytest.mark.memori
async def test_forgetting_and_summaries_keep_memori_in_step(memori_store):
    await memori_store.remember("lina_baker", memory("herbs", "Dax bought blue herbs from me", 3))
    await memori_store.remember("lina_baker", memory("rain", "It rained all day", 2))
    await memori_store.forget("lina_baker", ["rain"])
    assert [memory_id_of(f) for f, _ in await memori_store.memori.facts("lina_baker")] == ["herbs"]
    await memori_store.write_summary("lina_baker", memory("summary-1", "A day at the bakery", 50, kind="summary"))
    rewritten = memory("summary-1", "A day of selling herbs at the bakery", 50, kind="summary")
    await memori_store.write_summary("lina_baker", rewritten)  # its text changed: one fact, the new one
    assert [f for f, _ in await memori_store.memori.facts("lina_baker") if memory_id_of(f) == "summary-1"] == [
        fact_of(rewritten)
    ]
    found = await memori_store.search("lina_baker", now=NOW, query="selling herbs", limit=2)
    assert {item.memory.memory_id for item in found} == {"herbs", "summary-1"}


@pytest.mark.memori
async def test_without_a_query_time_weight_and_party_decide(memori_store):
    await memori_store.remember("lina_baker", memory("about-aria", "Aria said:", 48, about="player:1"))
    await memori_store.remember("lina_baker", memory("news", "The bridge was mended", 2, importance=6))
    found = await memori_store.search("lina_baker", now=NOW, about="player:1", limit=2)
    assert found[0].memory.memory_id == "about-aria" and found[0].parts["about"] == 1.0
    assert {item.parts["relevance"] for item in found} == {0.0}
    recalled = await memori_store.recall("lina_baker", now=NOW, limit=1)
    assert [item.memory_id for item in recalled] == ["news"]


def test_a_fact_names_its_memory_and_only_a_fact_does():
    item = memory("obs-lina-3", "Aria said:", 1, words="Have you got [blue] herbs?")
    assert memory_id_of(fact_of(item)) == "obs-lina-3"
    assert memory_id_of("a fact Memori got elsewhere") is None
    assert memory_id_of("half a mark\n[obs") is None


def test_database_urls_are_shown_without_their_password():
    assert redacted("mysql+pymysql://aiworld:s3cret@db:3306/world") == "mysql+pymysql://aiworld:***@db:3306/world"
    assert redacted("sqlite:///.aiworld/memori.sqlite") == "sqlite:///.aiworld/memori.sqlite"


@pytest.mark.memori
async def test_its_database_failing_is_a_store_outage(redis_client, keys):
    """A dropped database: Memori's errors come out as MemoriUnavailable, an OSError, which the
    NPC's activities treat as the state store failing (a decision without memories)."""
    name = f"aiworld_memori_{uuid.uuid4().hex[:10]}"
    await create_database(name)
    settings = MemorySettings(memori_database_url=mariadb_url(name))
    store = await open_memori_store(redis_client, keys, settings)
    dropped = False
    try:
        await store.remember("lina_baker", memory("herbs", "Dax bought blue herbs from me", 3))
        await drop_database(name)
        dropped = True
        with pytest.raises(MemoriUnavailable, match="Memori's database") as raised:
            await store.search("lina_baker", now=NOW, query="blue herbs?")
        assert isinstance(raised.value, OSError)
        with pytest.raises(MemoriUnavailable):
            await store.remember("lina_baker", memory("rain", "It rained", 1))
    finally:
        await store.memori.close()
        if not dropped:
            await drop_database(name)


@pytest.mark.memori
async def test_a_database_that_does_not_answer_is_refused_with_the_reason(unused_tcp_port):
    settings = MemorySettings(memori_database_url=f"mysql+pymysql://root@127.0.0.1:{unused_tcp_port}/none")
    with pytest.raises(MemoriUnavailable, match="Memori's database does not answer"):
        await MemoriBackend.open(settings)


@pytest.mark.memori
@pytest.mark.parametrize("url", ["not a database url", "postgresql+nosuchdriver://aiworld:secret@db/world"])
async def test_a_database_url_it_cannot_use_is_refused_with_the_reason(url):
    with pytest.raises(MemoriUnavailable, match="is no database Memori can use") as raised:
        await MemoriBackend.open(MemorySettings(memori_database_url=url))
    assert "secret" not in str(raised.value)


@pytest.mark.memori
async def test_no_model_directory_is_refused_with_the_reason(tmp_path):
    with pytest.raises(MemoriUnavailable, match="is no local model directory"):
        model_directory(MemorySettings(memori_embeddings_model=str(tmp_path)))
    assert (model_directory(MemorySettings()) / "modules.json").is_file()  # the model package's


@pytest.mark.memori
async def test_a_model_that_does_not_load_is_refused_not_recalled_as_zeros(tmp_path):
    """Memori's embedder returns zero vectors when its model fails to load: refused at open."""
    (tmp_path / "config.json").write_text("{}")
    settings = MemorySettings(
        memori_database_url=f"sqlite:///{tmp_path / 'memori.sqlite'}", memori_embeddings_model=str(tmp_path)
    )
    with pytest.raises(MemoriUnavailable, match="did not load the model"):
        await MemoriBackend.open(settings)
