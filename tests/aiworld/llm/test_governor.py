"""The LLM budget governor through the real router, the official SDKs and the provider server:
spend never passes the hard cap, each rung of the ladder is entered and left at its threshold,
dialogue keeps its LLM until the hard cap, and each decision says which rung decided it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from aiworld.config import BudgetLimits, BudgetSettings, LlmSettings, Settings
from aiworld.llm import build_router
from aiworld.llm.governor import BudgetGovernor
from aiworld.models import DialogueContext, GameEvent, NpcContext, NpcProfile, PlayerRef, TalkTurn
from tests.aiworld.llm.conftest import provider_settings
from tests.conftest import demo_profile

NOON = datetime(2026, 11, 25, 12, tzinfo=UTC)
ARIA = PlayerRef(char_id=150001, name="Aria", level=34)
TOKENS_PER_HOUR = 1_000_000


class Clock:
    """The governor's wall clock, moved by the test: windows start and end when the test says."""

    def __init__(self) -> None:
        self.now = NOON.timestamp()

    def __call__(self) -> float:
        return self.now


def governed_router(server, redis_client, keys, clock, budget: BudgetSettings, **llm):
    """OpenAI first; Claude configured as the cheaper model."""
    providers = provider_settings(server)
    providers["openai"] = providers["openai"].model_copy(update={"input_price_per_1k": 1.0, "output_price_per_1k": 2.0})
    providers["claude"] = providers["claude"].model_copy(update={"input_price_per_1k": 0.1, "output_price_per_1k": 0.2})
    settings = Settings(
        llm=LlmSettings(
            default_provider="openai",
            fallback=["claude"],
            providers={"openai": providers["openai"], "claude": providers["claude"]},
            budget=budget,
            **({"prompt_cache_ttl_seconds": 0, "batch_size": 1} | llm),
        )
    )
    return build_router(settings, redis_client, keys, clock=clock)


def context(
    npc_id: str = "lina_baker", minute: int = 0, importance: int = 5, char_id: int = ARIA.char_id
) -> NpcContext:
    return NpcContext(
        profile=NpcProfile.model_validate(demo_profile().model_dump() | {"npc_id": npc_id, "importance": importance}),
        now=NOON + timedelta(minutes=minute),
        events=[
            GameEvent(event_id=f"e-{minute}", kind="player_nearby", player=ARIA.model_copy(update={"char_id": char_id}))
        ],
    )


def dialogue(text: str = "Hello there") -> DialogueContext:
    return DialogueContext(profile=demo_profile("lina_baker"), now=NOON, turn=TalkTurn(player=ARIA, text=text))


async def spend_to(governor: BudgetGovernor, share: float) -> None:
    """Bring the hour's tokens to `share` of the limit, as calls the size of the gap would."""
    spent = (await governor.spent())["tokens"]
    gap = int(share * TOKENS_PER_HOUR - spent)
    assert gap >= 0, "the test only raises spend"
    reservation = await governor.reserve("routine", gap, 0.0)
    await governor.settle(reservation, gap, 0.0)


async def test_spend_never_passes_the_hard_cap_under_concurrent_calls(provider_server, redis_client, keys):
    clock = Clock()
    budget = BudgetSettings(overall=BudgetLimits(money_per_day=8.0))
    router = governed_router(provider_server, redis_client, keys, clock, budget, decision_cache_ttl_seconds=0)
    try:
        decisions = [router.decide(context(f"npc_{index}", minute=index)) for index in range(30)]
        replies = [router.converse(dialogue(f"line {index}")) for index in range(10)]
        results = await asyncio.gather(*decisions, *replies)
    finally:
        await router.aclose()
    usages = [result.usage for result in results[:30]] + [usage for _, usage in results[30:]]
    spent = await router.governor.spent()
    assert spent["money"] <= 8.0
    assert sum(usage.cost for usage in usages) <= 8.0
    answered = [usage for usage in usages if usage.provider != "offline"]
    capped = [usage for usage in usages if usage.budget_rung == "hard_cap"]
    assert answered and capped, "some calls fit the budget, the rest were refused before they were made"
    assert all(usage.provider == "offline" for usage in capped)
    assert all("hard cap" in usage.fallbacks[-1] for usage in capped)
    assert spent["money"] == pytest.approx(sum(usage.cost for usage in answered))


async def test_each_rung_is_entered_and_left_at_its_threshold(provider_server, redis_client, keys):
    clock = Clock()
    budget = BudgetSettings(overall=BudgetLimits(tokens_per_hour=TOKENS_PER_HOUR))
    router = governed_router(provider_server, redis_client, keys, clock, budget)
    governor = router.governor
    important, least = 8, 2
    try:
        await spend_to(governor, 0.49)
        below = await router.decide(context(importance=least, minute=1))
        assert (below.usage.budget_rung, below.usage.cadence_stretch, below.usage.provider) == ("normal", 1.0, "openai")

        await spend_to(governor, 0.50)  # 1: the least important NPCs wait longer
        stretched = await router.decide(context(importance=least, minute=2))
        kept = await router.decide(context("kafra_prontera", importance=important, minute=2))
        assert (stretched.usage.budget_rung, stretched.usage.cadence_stretch) == ("stretch_cadence", 4.0)
        assert (kept.usage.budget_rung, kept.usage.cadence_stretch) == ("stretch_cadence", 1.0)
        # The usual cache tells the morning from the afternoon: another part of the day, another call.
        calls = provider_server.calls["openai"]
        await router.decide(context(importance=important, minute=-200, char_id=7))
        await router.decide(context(importance=important, minute=0, char_id=7))
        assert provider_server.calls["openai"] == calls + 2

        await spend_to(governor, 0.65)  # 2: coarser situations, kept longer
        calls = provider_server.calls["openai"]
        morning = await router.decide(context(importance=important, minute=-200, char_id=8))
        noon = await router.decide(context(importance=important, minute=0, char_id=8))
        assert provider_server.calls["openai"] == calls + 1
        assert (morning.usage.cached, noon.usage.cached, noon.usage.budget_rung) == (False, True, "wide_cache")
        ttls = [await redis_client.ttl(key) for key in await redis_client.keys(f"{keys.prefix}llm:decision:*")]
        assert max(ttls) > 300, "the wide cache keeps decisions longer than the usual 5 minutes"

        await spend_to(governor, 0.80)  # 3: the cheapest model first
        cheap = await router.decide(context(importance=important, minute=3))
        assert (cheap.usage.provider, cheap.usage.budget_rung) == ("claude", "cheapest_model")

        await spend_to(governor, 0.90)  # 4: the least important NPCs to the offline policy
        offline = await router.decide(context(importance=least, minute=4))
        still_llm = await router.decide(context("kafra_prontera", importance=important, minute=4))
        _, talk = await router.converse(dialogue())
        assert (offline.usage.provider, offline.usage.budget_rung) == ("offline", "offline_below_importance")
        assert (still_llm.usage.provider, still_llm.usage.budget_rung) == ("claude", "offline_below_importance")
        assert talk.provider == "openai", "dialogue keeps its LLM below the hard cap"

        await spend_to(governor, 1.0)  # 5: the hard cap: everything offline, the reply too
        capped = await router.decide(context(importance=important, minute=5))
        _, capped_talk = await router.converse(dialogue("Still there?"))
        assert (capped.usage.provider, capped.usage.budget_rung) == ("offline", "hard_cap")
        assert (capped_talk.provider, capped_talk.budget_rung) == ("offline", "hard_cap")
        report = await governor.report()
        assert report["offline"] and "routine" in report["hard_capped_tiers"]
        assert report["ladder"]["routine"]["why"] == "all tiers: tokens/hour at 100% of 1e+06"

        clock.now += 3600  # a new hour: spend recovers, every rung is left
        recovered = await router.decide(context(importance=least, minute=6))
        _, talk_again = await router.converse(dialogue("Good morning"))
        assert (recovered.usage.provider, recovered.usage.budget_rung, recovered.usage.cadence_stretch) == (
            "openai",
            "normal",
            1.0,
        )
        assert talk_again.provider == "openai"
        report = await governor.report()
        assert not report["offline"] and report["ladder"]["routine"]["rung"] == "normal"
    finally:
        await router.aclose()
    changes = [(change["tier"], change["rung"]) for change in reversed(report["changes"])]
    routine = [rung for tier, rung in changes if tier == "routine"]
    assert routine == [
        "stretch_cadence",
        "wide_cache",
        "cheapest_model",
        "offline_below_importance",
        "hard_cap",
        "normal",
    ]
    assert [rung for tier, rung in changes if tier == "dialogue"] == ["offline_below_importance", "hard_cap", "normal"]


async def test_a_tier_budget_caps_its_tier_only(provider_server, redis_client, keys):
    clock = Clock()
    budget = BudgetSettings(tiers={"routine": BudgetLimits(calls_per_minute=2)})
    router = governed_router(provider_server, redis_client, keys, clock, budget, decision_cache_ttl_seconds=0)
    try:
        first = [await router.decide(context(f"npc_{index}", minute=index)) for index in range(3)]
        _, talk = await router.converse(dialogue())
        clock.now += 60
        next_minute = await router.decide(context("npc_9", minute=9))
    finally:
        await router.aclose()
    assert [result.usage.provider for result in first] == ["openai", "openai", "offline"]
    assert first[1].usage.budget_rung == "stretch_cadence"  # one call of two: halfway
    assert first[2].usage.budget_rung == "hard_cap"
    assert talk.provider == "openai", "the routine tier's budget is not dialogue's"
    assert next_minute.usage.provider == "openai" and next_minute.usage.budget_rung == "normal"


async def test_a_failed_call_gives_its_reserved_money_back(provider_server, redis_client, keys):
    clock = Clock()
    budget = BudgetSettings(overall=BudgetLimits(money_per_day=100.0))
    router = governed_router(provider_server, redis_client, keys, clock, budget, decision_cache_ttl_seconds=0)
    provider_server.faults[:] = ["500"]  # OpenAI fails (outside an activity: straight to Claude)
    try:
        result = await router.decide(context())
    finally:
        provider_server.faults.clear()
        await router.aclose()
    spent = await router.governor.spent()
    assert result.usage.provider == "claude"
    assert spent["calls"] == 2, "the failed call still counts as a call"
    assert spent["money"] == pytest.approx(result.usage.cost) == (13 * 0.1 + 5 * 0.2) / 1000


async def test_an_invalid_answer_is_paid_for_and_so_is_its_repair(provider_server, redis_client, keys):
    clock = Clock()
    budget = BudgetSettings(overall=BudgetLimits(money_per_day=100.0))
    router = governed_router(provider_server, redis_client, keys, clock, budget, decision_cache_ttl_seconds=0)
    provider_server.faults[:] = ["malformed"]
    try:
        result = await router.decide(context())
    finally:
        provider_server.faults.clear()
        await router.aclose()
    one_call = (11 * 1.0 + 7 * 2.0) / 1000
    assert result.usage.provider == "openai"
    assert (await router.governor.spent())["money"] == pytest.approx(2 * one_call)


async def test_the_governor_off_counts_spend_and_never_degrades(provider_server, redis_client, keys):
    clock = Clock()
    budget = BudgetSettings(enabled=False, overall=BudgetLimits(calls_per_minute=1))
    router = governed_router(provider_server, redis_client, keys, clock, budget, decision_cache_ttl_seconds=0)
    try:
        results = [await router.decide(context(f"npc_{index}", minute=index)) for index in range(3)]
    finally:
        await router.aclose()
    assert [(r.usage.provider, r.usage.budget_rung) for r in results] == [("openai", "normal")] * 3
    assert (await router.governor.spent())["calls"] == 3


async def test_each_rung_is_left_as_spend_falls_below_its_threshold(redis_client, keys):
    """Spend falls as windows pass: each hour here spends less than the last."""
    clock = Clock()
    governor = BudgetGovernor(
        BudgetSettings(overall=BudgetLimits(tokens_per_hour=TOKENS_PER_HOUR)), redis_client, keys, clock
    )
    seen = []
    for share in (1.0, 0.9, 0.8999, 0.8, 0.65, 0.6499, 0.5, 0.4999):
        clock.now += 3600
        await spend_to(governor, share)
        seen.append((share, (await governor.standing("routine")).rung.label))
    assert seen == [
        (1.0, "hard_cap"),
        (0.9, "offline_below_importance"),
        (0.8999, "cheapest_model"),
        (0.8, "cheapest_model"),
        (0.65, "wide_cache"),
        (0.6499, "stretch_cadence"),
        (0.5, "stretch_cadence"),
        (0.4999, "normal"),
    ]
    changes = (await governor.report())["changes"]
    assert [(c["from"], c["rung"]) for c in reversed(changes)] == [
        ("0", "hard_cap"),
        ("5", "offline_below_importance"),
        ("4", "cheapest_model"),
        ("3", "wide_cache"),
        ("2", "stretch_cadence"),
        ("1", "normal"),
    ]


async def test_a_call_whose_worst_case_does_not_fit_is_not_made(provider_server, redis_client, keys):
    """Nothing spent yet, but the most this call could cost (its prompt and the most output it may
    return) is over the day's money: neither the decision nor the reply is sent."""
    clock = Clock()
    budget = BudgetSettings(overall=BudgetLimits(money_per_day=0.5))
    router = governed_router(provider_server, redis_client, keys, clock, budget, decision_cache_ttl_seconds=0)
    calls = sum(provider_server.calls.values())
    try:
        decided = await router.decide(context())
        _, replied = await router.converse(dialogue())
    finally:
        await router.aclose()
    assert sum(provider_server.calls.values()) == calls
    for usage in (decided.usage, replied):
        assert (usage.provider, usage.budget_rung) == ("offline", "hard_cap")
        assert usage.fallbacks[-1].startswith("hard cap: all tiers would pass money/day 0.5")
    assert await router.governor.spent() == {"calls": 0.0, "tokens": 0.0, "money": 0.0}
