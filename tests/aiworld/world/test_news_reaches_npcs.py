"""What the world systems tell NPCs is what NPCs act on: the news of a cycle, as each recipient
hears it, moves the offline policy (a merchant reprices at the economy's price and says why; the
guards of a faction at war turn wary of the enemy, and peace relieves them)."""

from __future__ import annotations

from datetime import UTC, datetime

from aiworld.models import NpcContext
from aiworld.npc.offline_policy import decide
from aiworld.npc.rules import validate_decision
from aiworld.world import economy, politics
from aiworld.world.cycle import CycleOutcome, CycleParams
from aiworld.world.plans import news_of
from aiworld.world.words import words_for
from tests.aiworld.world.test_models import merchant, world_event

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def told(system: str, changes) -> list:
    # The offline writer's words (no LLM): what the cycle tells when its wording has no line.
    worded = words_for(changes, None)
    outcome = CycleOutcome(cycle_id=f"world-{system}-1", system=system, at=NOW, cursor="", changes=worded)
    return news_of(outcome, CycleParams())


def test_a_merchant_hears_of_the_price_rise_says_why_and_reprices_at_the_market_price():
    herbalist = merchant()
    step = economy.economy_step(
        {}, [world_event("fire", supply_item=507, supply_change=-40, cause="a fire")], [herbalist]
    )
    news = told("economy", step.changes)
    assert news, "a price move of this size is news"
    heard = news[0].event_for(herbalist.npc_id)
    decision = decide(NpcContext(profile=herbalist, now=NOW, events=[heard], sequence=1))
    said = " ".join(action.text for action in decision.actions if action.kind == "say")
    assert "is up" in said and "a fire" in said
    trade = next(action for action in decision.actions if action.kind == "trade")
    assert (trade.item_id, trade.price) == (507, int(step.fields["price:507"]))
    assert validate_decision(decision, herbalist).rejections == []


def test_guards_of_the_harmed_faction_turn_wary_of_the_enemy_and_peace_relieves_them():
    guard = merchant("captain", items=(), faction="prontera_guard", role="guard")
    state: dict[str, str] = {}
    war = []
    for cycle in range(6):
        raid = world_event(f"raid-{cycle}", event="attack", faction_a="bandits", faction_b="prontera_guard")
        step = politics.politics_step(state, [raid], {})
        state = {**{k: v for k, v in state.items() if k not in step.deleted}, **step.fields}
        war += [n for n in told("politics", step.changes) if n.facts.get("stance") == "war"]
    assert len(war) == 1
    decision = decide(NpcContext(profile=guard, now=NOW, events=[war[0].event_for(guard.npc_id)], sequence=2))
    assert (decision.mood, decision.activity) == ("wary", "standing watch")

    step = politics.politics_step(
        state, [world_event("peace", event="peace", faction_a="bandits", faction_b="prontera_guard")], {}
    )
    peace = [n for n in told("politics", step.changes) if n.facts.get("stance") == "peace"]
    assert len(peace) == 1
    assert decide(NpcContext(profile=guard, now=NOW, events=[peace[0].event_for(guard.npc_id)])).mood == "relieved"


def test_of_news_heard_together_the_npc_acts_on_what_touches_its_trade():
    """A cycle tells several things at once: a war between others is only remarked on, so the
    merchant acts on the price of what it sells even when the war is the more important news."""
    herbalist = merchant()
    prices = economy.economy_step(
        {}, [world_event("fire", supply_item=507, supply_change=-40, cause="a fire")], [herbalist]
    )
    price_news = told("economy", prices.changes)[0].event_for(herbalist.npc_id)
    war = world_event("war", faction="bandits", other_faction="prontera_guard", stance="war").event
    war = war.model_copy(update={"importance": 9})
    decision = decide(NpcContext(profile=herbalist, now=NOW, events=[war, price_news], sequence=4))
    assert any(action.kind == "trade" and action.item_id == 507 for action in decision.actions)
    assert "went up" in decision.reason
