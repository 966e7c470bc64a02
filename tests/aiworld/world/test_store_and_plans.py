"""The world's store and plans on their error paths: a cycle written once, a stale cursor refused,
a damaged key that stops the write before anything is written, bad inbox entries and records
skipped and counted, actions the game rules refuse and news with a scope that names no valid place."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as redis
from temporalio.exceptions import ApplicationError

from activities.world_activities import ApplyRequest, ReadRequest, WorldActivities
from aiworld.memory.store import MemoryStore
from aiworld.models import GameEvent, GameEventKind, PlayerRef
from aiworld.store.action_queue import ActionQueue
from aiworld.world import environment, plans
from aiworld.world.cycle import CycleOutcome, CycleParams, CycleRead, CycleWrite, RelationshipMove, WorldChange
from aiworld.world.quests import Quest
from aiworld.world.store import CursorMoved, WorldStore
from aiworld.world.words import OfflineNarrator
from tests.aiworld.ops.test_doctor import closed_port
from tests.aiworld.world.test_models import merchant

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def outcome(cycle_id: str, cursor: str = "", **state: str) -> CycleOutcome:
    return CycleOutcome(
        cycle_id=cycle_id,
        system="economy",
        at=NOW,
        cursor=cursor,
        changes=[WorldChange(what="price:507", before="50", after="60", why="short")],
        write=CycleWrite(state=state, factions={"guild": {"standing:1": "5"}}),
    )


def activities(redis_client, keys) -> WorldActivities:
    return WorldActivities(
        WorldStore(redis_client, keys),
        MemoryStore(redis_client, keys),
        ActionQueue(redis_client, keys),
        OfflineNarrator(),
    )


async def test_a_cycle_is_written_once_and_a_stale_cursor_is_refused(redis_client, keys):
    store = WorldStore(redis_client, keys)
    assert await store.apply(outcome("c1", cursor="5-0", **{"price:507": "60"}), "", 100)
    assert not await store.apply(outcome("c1", cursor="5-0", **{"price:507": "99"}), "", 100)
    assert (await store.state("economy"))["price:507"] == "60"
    assert len(await store.history("economy", None, None, 100)) == 1
    with pytest.raises(CursorMoved):  # read before c1 wrote: its inputs are stale
        await store.apply(outcome("c2", cursor="6-0", **{"price:507": "70"}), "", 100)
    assert (await store.state("economy"))["price:507"] == "60"
    with pytest.raises(ApplicationError) as refused:
        await activities(redis_client, keys).apply_world_cycle(
            ApplyRequest(outcome=outcome("c2", cursor="6-0"), expected_cursor="", history_cap=100)
        )
    assert refused.value.type == "CursorMoved" and refused.value.non_retryable


async def test_a_damaged_key_stops_the_write_before_anything_is_written(redis_client, keys):
    await redis_client.set(keys.faction("guild"), "not a hash")
    with pytest.raises(ApplicationError) as damaged:
        await activities(redis_client, keys).apply_world_cycle(
            ApplyRequest(outcome=outcome("c1", **{"price:507": "60"}), expected_cursor="", history_cap=100)
        )
    assert damaged.value.type == "WorldStateDamaged" and "faction:guild" in str(damaged.value)
    assert await WorldStore(redis_client, keys).state("economy") == {}
    assert await redis_client.exists(keys.world_history("economy"), keys.world_cycles("economy")) == 0


async def test_a_rerun_whose_outcome_expired_repeats_nothing(redis_client, keys):
    store = WorldStore(redis_client, keys)
    assert await store.apply(outcome("c1"), "", 100)
    await redis_client.delete(keys.world_cycle_outcome("economy", "c1"))
    read = await activities(redis_client, keys).read_world_cycle(ReadRequest(system="economy", cycle_id="c1"))
    assert read.applied is not None and not read.applied.changes and not read.applied.actions


async def test_bad_inbox_entries_and_damaged_records_are_skipped_and_counted(redis_client, keys):
    good = GameEvent(
        event_id="e1", kind=GameEventKind.WORLD_EVENT, text="x", facts={"supply_item": 507, "supply_change": -30}
    )
    await redis_client.xadd(keys.world_inbox("economy"), {"event": '{"kind": "teleport"}'})
    last = await redis_client.xadd(keys.world_inbox("economy"), {"event": good.model_dump_json(), "map": "prontera"})
    await MemoryStore(redis_client, keys).publish_npc(merchant(), {})
    await MemoryStore(redis_client, keys).publish_npc(merchant("broken_npc"), {})
    await redis_client.hset(keys.npc("broken_npc"), "profile", "{not json")
    read = await activities(redis_client, keys).read_world_cycle(ReadRequest(system="economy", cycle_id="c1"))
    assert read.refused_entries == 1 and [entry.event.event_id for entry in read.inbox] == ["e1"]
    assert read.next_cursor == last and read.inbox[0].map == "prontera"
    assert [npc.npc_id for npc in read.npcs] == ["herbalist"]
    planned = plans.plan_economy(read, NOW, CycleParams())
    assert planned.events_read == 2 and planned.changes[0].what == "inbox:refused"
    await redis_client.zadd(keys.open_quests(), {"qbroken": 1})
    await redis_client.hset(keys.quest("qbroken"), mapping={"data": "{"})
    quests_read = await activities(redis_client, keys).read_world_cycle(ReadRequest(system="quests", cycle_id="q1"))
    assert plans.plan_quests(quests_read, NOW, CycleParams()).changes == []


def test_actions_the_rules_refuse_are_left_out_with_why():
    low = merchant("lowly_npc", importance=2)
    read = CycleRead(cycle_id="c0", npcs=[low], maps=["prontera"])
    summer = datetime(2026, 6, 1, tzinfo=UTC)
    day = 1000.0
    season = environment.calendar(summer, day, 1)[2]
    assert season != "winter"
    storm_cycle = next(
        f"c{n}"
        for n in range(2000)
        if any(
            e.kind == "storm" for e in environment.environment_step({}, ["prontera"], summer, f"c{n}", day, 1).events
        )
    )
    planned = plans.plan_environment(
        read.model_copy(update={"cycle_id": storm_cycle}), summer, CycleParams(game_day_seconds=day, days_per_season=1)
    )
    assert not [a for a in planned.actions if a.action.kind == "announce"]
    assert any("announcement needs importance" in why for why in planned.refused)


def test_a_completed_quest_whose_giver_is_gone_is_recorded_not_paid():
    aria = PlayerRef(char_id=150001, name="Aria")
    quest = Quest(
        quest_id="qgone",
        kind="fetch",
        status="taken",
        title="Bring herbs",
        giver="gone_npc",
        giver_name="Gone",
        faction="merchants_guild",
        map="prontera",
        target=507,
        needed=1,
        slot=64500,
        cause="shortage",
        created_at=NOW.timestamp(),
        expires_at=(NOW + timedelta(hours=1)).timestamp(),
        taker=aria.char_id,
    )
    hand = GameEvent(event_id="h1", kind=GameEventKind.ITEM_RECEIVED, player=aria, item_id=507, amount=1)
    read = CycleRead(cycle_id="c1", quests={"qgone": quest.to_hash()}, inbox=[{"entry_id": "1-0", "event": hand}])  # type: ignore[list-item]
    planned = plans.plan_quests(read, NOW, CycleParams())
    assert not planned.actions and any("giver of qgone is gone" in why for why in planned.refused)
    assert planned.write.closed_quests == ["qgone"] and planned.write.forwarded["politics"]


def test_news_with_a_scope_naming_no_valid_place_is_not_told():
    planned = CycleOutcome(
        cycle_id="c1",
        system="environment",
        at=NOW,
        cursor="",
        changes=[
            WorldChange(
                what="weather:x", why="w", importance=8, scope={"kind": "map", "map": "Not A Map!"}, text="Rain"
            ),
            WorldChange(what="season", why="s", importance=8, scope={"kind": "world"}, text="Winter came"),
        ],
    )
    told = plans.news_of(planned, CycleParams())
    assert [news.text for news in told] == ["Winter came"]
    assert told[0].news_id == plans.news_of(planned, CycleParams())[0].news_id  # the same id every time
    assert any("news of weather:x not told" in why for why in planned.refused)


async def test_a_store_that_does_not_answer_fails_the_follow_ups_cleanly(keys):
    """Nothing listens on the port: the follow-ups fail as StoreUnavailable (retried by the cycle's
    policy), never with the client's own error type."""
    down = redis.Redis.from_url(f"redis://127.0.0.1:{closed_port()}/0", socket_connect_timeout=1)
    try:
        world = activities(down, keys)
        planned = plans.plan_quests(CycleRead(cycle_id="c1"), NOW, CycleParams())
        planned.relationships.append(
            RelationshipMove(npc_id="herbalist", party="player:1", delta=10, change_id="quest-q1", reason="done")
        )
        with pytest.raises(ApplicationError) as failed:
            await world.carry_out_world_cycle(planned)
        assert failed.value.type == "StoreUnavailable" and not failed.value.non_retryable
    finally:
        await down.aclose()


def test_a_weather_change_is_shown_by_the_map_s_most_important_npc_only_where_one_may():
    """The game shows weather with a map flag the rules let only an NPC of importance 8 or more
    set: a map with such an NPC gets the flag of its new weather, a map without one gets none."""
    lord = merchant("lord_of_prontera", importance=9)
    baker = merchant("baker_of_payon", importance=3).model_copy(update={"map": "payon"})
    read = CycleRead(cycle_id="c0", npcs=[lord, baker], maps=["prontera", "payon"])
    planned = plans.plan_environment(read, NOW, CycleParams(game_day_seconds=1000.0, days_per_season=1))
    weather = {change.what: change.after for change in planned.changes if change.what.startswith("weather:")}
    assert set(weather) == {"weather:prontera", "weather:payon"}  # a first cycle sets every map's weather
    flags = [(a.npc_id, a.action.weather) for a in planned.actions if a.action.kind == "weather"]
    assert flags == [("lord_of_prontera", environment.MAP_FLAG_OF[weather["weather:prontera"]])]
    assert not [why for why in planned.refused if "weather" in why]
