"""World words: the LLM tier `world` phrases the changes; a provider that fails or answers garbage
leaves the offline writer's words, and markup never reaches the game."""

from __future__ import annotations

import pytest

from activities.world_activities import WordsRequest, WorldActivities
from aiworld.config import LlmSettings, Settings
from aiworld.llm import build_router
from aiworld.memory.store import MemoryStore
from aiworld.store.action_queue import ActionQueue
from aiworld.world.cycle import WorldChange
from aiworld.world.store import WorldStore
from aiworld.world.words import offline_line
from tests.aiworld.llm.conftest import provider_server, provider_settings  # noqa: F401  (fixture)

CHANGES = [
    WorldChange(
        what="price:507",
        before="50",
        after="62",
        why="up 24%: monsters invaded prt_fild08",
        importance=6,
        scope={"kind": "world"},
        facts={"item_id": 507, "cause": "monsters invaded prt_fild08"},
    ),
    WorldChange(what="weather:prontera", before="clear", after="rain", why="spring weather", facts={"map": "prontera"}),
]


def activities_for(server, redis_client, keys) -> tuple[WorldActivities, object]:
    providers = provider_settings(server, timeout=0.5)
    settings = Settings(
        llm=LlmSettings(
            default_provider="offline",
            tiers={"world": "openai"},
            providers={"openai": providers["openai"]},
            prompt_cache_ttl_seconds=0,
        )
    )
    router = build_router(settings, redis_client, keys)
    world = WorldActivities(
        WorldStore(redis_client, keys), MemoryStore(redis_client, keys), ActionQueue(redis_client, keys), router
    )
    return world, router


async def test_the_world_tier_words_the_changes(provider_server, redis_client, keys):  # noqa: F811
    world, router = activities_for(provider_server, redis_client, keys)
    try:
        worded = await world.word_world_changes(WordsRequest(system="economy", changes=CHANGES))
    finally:
        await router.aclose()  # type: ignore[attr-defined]
    assert worded.words_by == "openai"
    assert [change.text for change in worded.changes] == [
        "The chronicler says: change 0 came to pass.",
        "The chronicler says: change 1 came to pass.",
    ]
    assert worded.changes[0].after == "62"  # the numbers stay the model's


@pytest.mark.parametrize("faults", [["500"], ["schema", "schema"], ["garbled"], ["html"]])
async def test_a_failing_or_garbled_model_leaves_the_offline_words(provider_server, redis_client, keys, faults):  # noqa: F811
    world, router = activities_for(provider_server, redis_client, keys)
    provider_server.faults[:] = list(faults)
    try:
        worded = await world.word_world_changes(WordsRequest(system="economy", changes=CHANGES))
    finally:
        provider_server.faults.clear()
        await router.aclose()  # type: ignore[attr-defined]
    assert worded.words_by == "offline"
    assert [change.text for change in worded.changes] == [offline_line(change) for change in CHANGES]
    assert "monsters invaded prt_fild08" in worded.changes[0].text


async def test_markup_in_the_models_words_never_reaches_the_game(provider_server, redis_client, keys):  # noqa: F811
    world, router = activities_for(provider_server, redis_client, keys)
    provider_server.faults[:] = ["tags"]
    try:
        worded = await world.word_world_changes(WordsRequest(system="economy", changes=CHANGES))
    finally:
        provider_server.faults.clear()
        await router.aclose()  # type: ignore[attr-defined]
    assert all("<" not in change.text and ">" not in change.text for change in worded.changes)
