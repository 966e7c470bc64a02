"""Prompts carry world news with its facts and the world's state, and say how to act on them."""

from __future__ import annotations

import json

from aiworld.llm.prompts import decision_prompt
from aiworld.models import GameEvent, NpcContext
from tests.aiworld.llm.test_router import NOON, router_for
from tests.conftest import demo_profile

SHORTAGE = GameEvent(
    event_id="milk-1:lina_baker",
    kind="world_event",
    text="Milk is scarce",
    importance=6,
    facts={"item_id": 519, "item_name": "Milk", "price_change_pct": 25, "cause": "wolves scattered the herds"},
)


def news_context() -> NpcContext:
    return NpcContext(
        profile=demo_profile("lina_baker"),
        now=NOON,
        events=[SHORTAGE],
        world={"economy.inflation_rate": "0.03", "politics.prontera_guard.orc_clans": "-80"},
    )


def test_the_decision_prompt_carries_the_news_facts_the_world_and_how_to_use_them():
    rules, prompt = decision_prompt(news_context())
    assert "merchant tells of a price change and its cause" in rules
    assert "faction at war is wary of the enemy faction" in rules
    data = json.loads(prompt.split("DATA:\n", 1)[1])
    assert data["events"][0]["facts"] == SHORTAGE.facts
    assert data["events"][0]["text_quoted"] == '"Milk is scarce"'
    assert data["world"]["politics.prontera_guard.orc_clans"] == "-80"


async def test_a_provider_receives_the_news_facts(provider_server, redis_client, keys):
    router = router_for(provider_server, redis_client, keys, prompt_cache_ttl_seconds=0, decision_cache_ttl_seconds=0)
    try:
        await router.decide(news_context())
    finally:
        await router.aclose()
    sent = provider_server.bodies[-1]
    assert "price_change_pct" in sent and "wolves scattered the herds" in sent and "inflation_rate" in sent
