"""The whole world on real schedules with every workflow real: a world cycle's news goes through
the event coordinator to the living NPCs it concerns, and they act on it (the merchant reprices and
says why, the guard of the harmed faction turns wary), each hearing it once."""

from __future__ import annotations

from collections import Counter

from aiworld.memory.store import MemoryStore
from aiworld.models import DecisionRecord
from aiworld.world.schedules import apply_schedules
from tests.conftest import NpcLife
from tests.workflows.test_world_cycles import (
    BANDIT,
    CAPTAIN,
    HERBALIST,
    WEEK_SETTINGS,
    World,
    _stop_cycles,
    news_event,
)


def acted_on_news(records: list[DecisionRecord], reason_part: str) -> bool:
    return any(reason_part in record.decision.reason for record in records if record.trigger == "events")


async def test_news_of_the_world_reaches_the_npcs_concerned_and_they_act_on_it(dev_life: NpcLife, redis_client, keys):
    world = World(dev_life.client, dev_life.task_queue, keys, redis_client, broadcasts="")
    memory = MemoryStore(redis_client, keys)
    handles = {}
    for profile in (HERBALIST, CAPTAIN, BANDIT):
        handles[profile.npc_id] = await dev_life.start(profile)
        await memory.publish_npc(profile, {})  # listed as registration lists it
    try:
        # Cycles a second or two apart; a game day long enough that seasons do not drown the news.
        settings = WEEK_SETTINGS.model_copy(update={"game_day_seconds": 120})
        await apply_schedules(world.client, settings, world.task_queue, prefix=f"{world.task_queue}-")
        await world.send("economy", news_event("Herb cellar burnt", supply_item=507, supply_change=-60, cause="a fire"))
        for raid in range(5):
            attack = news_event(f"Raid {raid}", event="attack", faction_a="bandits", faction_b="prontera_guard")
            await world.send("politics", attack, faction="prontera_guard")

        herbalist = await dev_life.wait_for_decisions(
            handles[HERBALIST.npc_id], lambda records: acted_on_news(records, "went up"), timeout=240
        )
        repriced = next(r for r in herbalist if r.trigger == "events" and "went up" in r.decision.reason)
        assert any(action.kind == "trade" and action.item_id == 507 for action in repriced.decision.actions)
        captain = await dev_life.wait_for_decisions(
            handles[CAPTAIN.npc_id], lambda records: acted_on_news(records, "at war with the bandits"), timeout=240
        )
        assert captain
    finally:
        await _stop_cycles(world.client, world.task_queue)

    # Each NPC heard each piece of news once, though the coordinator and the cycles may have run
    # more than once for it.
    for handle in handles.values():
        heard = Counter(
            event_id
            for record in await handle.query("recent_decisions", result_type=list[DecisionRecord])
            for event_id in record.event_ids
        )
        assert all(count == 1 for count in heard.values()), heard
