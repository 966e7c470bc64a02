"""The world systems' pure models: numbers move for the reasons they should, within their bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiworld.models import GameEvent, GameEventKind, NpcProfile, Personality, PlayerRef, ShopItem
from aiworld.npc.rules import DEFAULT_LIMITS
from aiworld.world import economy, environment, politics, quests
from aiworld.world.cycle import InboxEntry

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
ARIA = PlayerRef(char_id=150001, name="Aria", map="prontera", x=150, y=150)


def merchant(npc_id: str = "herbalist", items: tuple[tuple[int, int], ...] = ((507, 50),), **changes) -> NpcProfile:
    return NpcProfile(
        npc_id=npc_id,
        name=npc_id.title(),
        sprite=90,
        map=changes.pop("map", "prontera"),
        x=150,
        y=150,
        faction=changes.pop("faction", "merchants_guild"),
        personality=Personality(description="Sells herbs."),
        shop=[ShopItem(item_id=item, base_price=price) for item, price in items],
        **changes,
    )


def world_event(event_id: str, faction: str | None = None, **facts) -> InboxEntry:
    event = GameEvent(event_id=event_id, kind=GameEventKind.WORLD_EVENT, text="news", facts=facts)
    return InboxEntry(entry_id=f"{event_id}-0", event=event, faction=faction)


def test_a_supply_shock_raises_the_price_within_the_rules_then_it_recovers():
    merchants = [merchant()]
    state: dict[str, str] = {}
    step = economy.economy_step(state, [world_event("invasion", event="invasion", map="prt_fild08")], merchants)
    prices = [int(step.fields["price:507"])]
    assert step.changes and "monsters invaded prt_fild08" in step.changes[0].why
    assert step.reprices == [("herbalist", 507, prices[0])]
    state = step.fields
    for _ in range(20):
        state = economy.economy_step(state, [], merchants).fields
        prices.append(int(state["price:507"]))
    ceiling = 50 * DEFAULT_LIMITS.price_ceiling_factor
    assert 50 < max(prices) <= ceiling
    assert prices[-1] <= 52  # back near the base price once supply recovered
    assert abs(float(state["inflation_pct"])) <= 5


def test_sales_raise_demand_and_players_prices_pull_the_target():
    merchants = [merchant()]
    sold = GameEvent(
        event_id="sale-1", kind=GameEventKind.ACTION_RESULT, action_id="a1", outcome="done", item_id=507, amount=20
    )
    step = economy.economy_step({}, [InboxEntry(entry_id="1-0", event=sold)], merchants)
    assert int(step.fields["demand:507"]) > economy.NORMAL and step.fields["trade_volume"] == "20"
    cheap = economy.economy_step({"price_507": "46"}, [], merchants)
    assert int(cheap.fields["price:507"]) >= round(50 * DEFAULT_LIMITS.price_floor_factor)


def test_repeated_attacks_start_a_conflict_that_only_peace_ends():
    state: dict[str, str] = {}
    factions: dict[str, dict[str, str]] = {}
    started = None
    for cycle in range(6):
        step = politics.politics_step(
            state,
            [world_event(f"raid-{cycle}", event="attack", faction_a="bandits", faction_b="prontera_guard")],
            factions,
        )
        state = {**{k: v for k, v in state.items() if k not in step.deleted}, **step.fields}
        if any(change.after == "conflict" for change in step.changes):
            started = cycle
    assert started is not None and state["victim:bandits:prontera_guard"] == "prontera_guard"
    for _ in range(10):  # no fading while at war
        step = politics.politics_step(state, [], factions)
        state = {**{k: v for k, v in state.items() if k not in step.deleted}, **step.fields}
    assert "conflict:bandits:prontera_guard" in state
    peace = world_event("peace", event="peace", faction_a="bandits", faction_b="prontera_guard")
    step = politics.politics_step(state, [peace], factions)
    assert any(change.after == "peace" for change in step.changes)
    assert "conflict:bandits:prontera_guard" in step.deleted
    assert step.factions["bandits"]["conflict:prontera_guard"] == ""


def test_quests_done_raise_a_players_standing_and_castles_change_hands():
    done = world_event("done", event="quest_done", faction="church", char_id=150001)
    castle = world_event("castle", event="castle", map="prtg_cas01", owner="royal_court")
    step = politics.politics_step({}, [done, castle], {"church": {"standing:150001": "10"}})
    assert step.factions["church"]["standing:150001"] == "15"
    assert step.fields["territory:prtg_cas01"] == "royal_court"


def test_a_castle_passes_between_guilds_and_is_free_when_its_guild_breaks_up():
    def took(owner: str, number: int) -> InboxEntry:
        return world_event(f"castle-{number}", event="castle", map="prtg_cas01", owner=owner)

    state: dict[str, str] = {}
    assert not politics.politics_step(state, [took("none", 0)], {}).changes, "a free castle nobody held: no news"
    step = politics.politics_step(state, [took("guild_7", 1)], {})
    state = step.fields
    step = politics.politics_step(state, [took("guild_8", 2)], {})
    assert step.fields["territory:prtg_cas01"] == "guild_8"
    assert step.factions["guild_7"]["territory:prtg_cas01"] == "" and step.changes[0].why.endswith("from guild_7")
    state = {**state, **step.fields}
    step = politics.politics_step(state, [took("none", 3)], {})
    assert step.deleted == ["territory:prtg_cas01"] and "none" not in step.factions
    assert step.factions["guild_8"]["territory:prtg_cas01"] == ""
    assert step.changes[0].why == "guild_8 lost prtg_cas01"


def test_players_vending_sales_raise_demand_and_count_in_the_trade_volume():
    merchants = [merchant()]
    sales = [world_event(f"vend-{row}", event="vending_sale", sold_item=507, sold_amount=10) for row in range(3)]
    other = world_event("vend-9", event="vending_sale", sold_item=909, sold_amount=4)  # no merchant sells it
    step = economy.economy_step({}, [*sales, other], merchants)
    assert int(step.fields["demand:507"]) == economy.NORMAL + economy.DEMAND_PER_UNIT_SOLD * 30
    assert step.fields["trade_volume"] == "34"
    assert int(step.fields["price:507"]) > 50, "more demand than supply lifts the price"


def test_weather_follows_the_season():
    day = 100.0
    seen: dict[str, set[str]] = {season: set() for season in environment.SEASONS}
    state: dict[str, str] = {}
    for cycle in range(400):
        now = NOW + timedelta(seconds=cycle * 25)
        step = environment.environment_step(state, ["prontera"], now, f"c{cycle}", day, 1)
        state = step.fields
        seen[state["season"]].add(state["weather:prontera"])
    assert "snow" in seen["winter"] and "rain" not in seen["winter"]
    assert all("snow" not in seen[season] for season in ("spring", "summer", "autumn"))
    game_day, phase, season = environment.calendar(NOW, day, 1)
    assert season == environment.SEASONS[(game_day // 1) % 4] and phase in {"night", "dawn", "day", "dusk"}


def test_a_shortage_makes_a_fetch_quest_that_is_taken_progressed_and_paid_once():
    herbalist = merchant(wealth=5000, importance=6)
    step = quests.quest_step({}, [], {"supply:507": "40", "price:507": "80"}, {}, [herbalist], NOW, "c1", 3600, 8)
    [quest] = step.quests.values()
    assert quest.kind == "fetch" and quest.giver == "herbalist" and quest.target == 507
    assert quest.slot in quests.QUEST_SLOTS and 0 < quest.reward_zeny <= DEFAULT_LIMITS.max_zeny_gift
    taken = GameEvent(
        event_id="t1",
        kind=GameEventKind.WORLD_EVENT,
        text="taken",
        player=ARIA,
        facts={"quest_id": quest.quest_id, "quest_step": "taken"},
    )
    step = quests.quest_step(
        {quest.quest_id: quest}, [InboxEntry(entry_id="1", event=taken)], {}, {}, [herbalist], NOW, "c2", 3600, 8
    )
    quest = step.quests[quest.quest_id]
    assert quest.status == "taken" and quest.taker == ARIA.char_id
    hand = GameEvent(event_id="h1", kind=GameEventKind.ITEM_RECEIVED, player=ARIA, item_id=507, amount=quest.needed)
    again = InboxEntry(entry_id="3", event=hand, npc_id="herbalist")
    step = quests.quest_step(
        {quest.quest_id: quest},
        [InboxEntry(entry_id="2", event=hand, npc_id="herbalist"), again],
        {},
        {},
        [herbalist],
        NOW,
        "c3",
        3600,
        8,
    )
    assert len(step.payouts) == 1 and step.quests[quest.quest_id].status == "completed"
    other = GameEvent(event_id="h2", kind=GameEventKind.ITEM_RECEIVED, player=ARIA, item_id=507, amount=3)
    later = quests.quest_step(
        step.quests,
        [InboxEntry(entry_id="4", event=other, npc_id="herbalist")],
        {},
        {},
        [herbalist],
        NOW,
        "c4",
        3600,
        8,
    )
    assert not later.payouts


def test_an_untaken_quest_expires_and_frees_its_slot():
    herbalist = merchant()
    step = quests.quest_step({}, [], {"supply:507": "40"}, {}, [herbalist], NOW, "c1", 60, 8)
    [quest] = step.quests.values()
    later = quests.quest_step(
        {quest.quest_id: quest}, [], {}, {}, [herbalist], NOW + timedelta(seconds=61), "c2", 60, 8
    )
    assert later.quests[quest.quest_id].status == "expired" and later.closed == [quest.quest_id]


def test_a_conflict_makes_a_hunt_for_the_faction_that_suffers():
    guard = merchant("gareth", (), faction="prontera_guard", importance=8)
    politics_state = {"conflict:bandits:prontera_guard": "raids", "victim:bandits:prontera_guard": "prontera_guard"}
    step = quests.quest_step({}, [], {}, politics_state, [guard], NOW, "c1", 3600, 8)
    [quest] = step.quests.values()
    assert quest.kind == "hunt" and quest.giver == "gareth" and quest.faction == "prontera_guard"
    taken = quest.model_copy(update={"status": "taken", "taker": ARIA.char_id})
    kills = [
        InboxEntry(
            entry_id=str(n),
            event=GameEvent(
                event_id=f"k{n}", kind=GameEventKind.PLAYER_KILLED_MONSTER, player=ARIA, detail="monster 1002"
            ),
            map="prontera",
        )
        for n in range(quests.HUNT_KILLS)
    ]
    done = quests.quest_step({quest.quest_id: taken}, kills, {}, politics_state, [guard], NOW, "c2", 3600, 8)
    assert done.quests[quest.quest_id].status == "completed" and len(done.payouts) == 1
