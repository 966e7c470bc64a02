"""The memory's use of the LLM layer, through the real SDKs against the tests' provider server:
the `reflection` tier (a good answer, one citing nothing shown, garbage) and embeddings (cached,
counted, batched)."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

from aiworld.config import MemorySettings
from aiworld.memory.embeddings import Embedder
from aiworld.memory.store import MemoryStore
from aiworld.models import Memory
from tests.aiworld.llm.test_router import router_for
from tests.conftest import demo_profile

NOON = datetime(2026, 11, 25, 12, tzinfo=UTC)


def lived(count: int = 4) -> list[Memory]:
    return [
        Memory(
            memory_id=f"{index}-event-0",
            text="Aria bought bread",
            importance=4,
            about="player:150001",
            valence=0.5,
            created_at=NOON + timedelta(minutes=index),
        )
        for index in range(count)
    ]


async def test_the_reflection_tier_writes_insights_citing_what_it_was_shown(provider_server, redis_client, keys):
    router = router_for(provider_server, redis_client, keys, tiers={"reflection": "openai"})
    try:
        insights, usage = await router.reflect(demo_profile("lina_baker"), lived())
    finally:
        await router.aclose()
    assert usage.provider == "openai" and usage.tier == "reflection"
    assert [insight.text for insight in insights] == ["Aria keeps coming back to my stall"]
    assert insights[0].evidence == ["0-event-0", "1-event-0"]


async def test_an_answer_citing_nothing_shown_goes_down_the_chain(provider_server, redis_client, keys):
    router = router_for(provider_server, redis_client, keys, chain=("openai", "claude"), prompt_cache_ttl_seconds=0)
    provider_server.faults[:] = ["uncited"]
    try:
        insights, usage = await router.reflect(demo_profile("lina_baker"), lived())
    finally:
        provider_server.faults.clear()
        await router.aclose()
    assert usage.provider == "claude" and usage.fallbacks == ["openai: no insight cites a memory it was shown"]
    assert insights[0].evidence == ["0-event-0", "1-event-0"]


async def test_garbage_from_every_provider_ends_in_the_offline_summarizer(provider_server, redis_client, keys):
    router = router_for(provider_server, redis_client, keys, chain=("openai",), prompt_cache_ttl_seconds=0)
    provider_server.faults[:] = ["malformed", "malformed"]  # the answer and its repair
    try:
        insights, usage = await router.reflect(demo_profile("lina_baker"), lived())
    finally:
        provider_server.faults.clear()
        await router.aclose()
    assert usage.provider == "offline" and usage.fallbacks and usage.fallbacks[0].startswith("openai")
    assert insights[0].text == "I have dealt with player:150001 4 times lately, warmly."
    assert insights[0].evidence == [memory.memory_id for memory in lived()]


async def test_memories_are_embedded_by_the_provider_once_in_one_batch(provider_server, redis_client, keys):
    router = router_for(provider_server, redis_client, keys, chain=("openai",))
    store = MemoryStore(redis_client, keys, MemorySettings(), Embedder(redis_client, keys, router.embed))
    try:
        before = provider_server.calls["openai-embeddings"]
        await store.remember_all("lina_baker", lived(3))
        assert provider_server.calls["openai-embeddings"] - before == 1  # three texts, one call
        await store.search("lina_baker", now=NOON, query="Aria bought bread")  # the same text: cached
        assert provider_server.calls["openai-embeddings"] - before == 1
    finally:
        await router.aclose()
    counted = await redis_client.hgetall(keys.llm_counter())
    assert counted["embeddings.memory.cache_misses"] == "3" and counted["embeddings.memory.cache_hits"] == "1"
    [(memory, vector)] = await store.load("lina_baker", ["0-event-0"])
    assert len(vector) == 3  # the provider's own space, not the local one


async def test_a_provider_down_embeds_locally_and_uncached(provider_server, redis_client, keys):
    router = router_for(provider_server, redis_client, keys, chain=("openai",))
    embed = functools.partial(router.embed, local_fallback=False)
    store = MemoryStore(redis_client, keys, MemorySettings(), Embedder(redis_client, keys, embed))
    provider_server.faults[:] = ["500"]
    try:
        assert await store.remember("lina_baker", lived(1)[0])
        [(memory, vector)] = await store.load("lina_baker", ["0-event-0"])
        assert len(vector) == 256  # the local embedding stood in
        # The provider is back: the same text now gets the provider's vector, not a cached local one.
        again = await store.embedder.embed([memory.text])
        assert len(again[0]) == 3
    finally:
        provider_server.faults.clear()
        await router.aclose()
    counted = await redis_client.hgetall(keys.llm_counter())
    assert counted["embeddings.memory.local_fallbacks"] == "1" and counted["embeddings.memory.cache_misses"] == "1"
