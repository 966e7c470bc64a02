"""Which world system hears of which game event, once per event id, within the inbox's cap."""

from __future__ import annotations

import json

from aiworld.config import CoordinatorSettings
from aiworld.models import GameEvent, PlayerRef
from aiworld.world.routing import WorldInbox, systems_for

ARIA = PlayerRef(char_id=150001, name="Aria")


def event(kind: str, **fields) -> GameEvent:
    return GameEvent.model_validate({"event_id": f"e-{kind}", "kind": kind, **fields})


def test_each_kind_of_event_goes_to_the_systems_that_care():
    trade_done = event("action_result", action_id="a-1", outcome="done")
    assert systems_for(trade_done, action_kind="trade") == ["economy"]
    assert systems_for(trade_done, action_kind="say") == []
    assert systems_for(event("action_result", action_id="a-1", outcome="failed"), action_kind="trade") == []
    attack = event("player_attacked", player=ARIA)
    assert systems_for(attack, faction="prontera_guard") == ["politics"]
    assert systems_for(attack, faction="none") == [] and systems_for(attack) == []
    assert systems_for(event("player_killed_monster", player=ARIA)) == ["quests"]
    assert systems_for(event("item_received", player=ARIA, item_id=512, amount=1)) == ["quests"]
    assert systems_for(event("world_event", text="Snow")) == ["environment"]
    war = event("world_event", text="War", facts={"faction": "orc_clans", "stance": "war"})
    assert systems_for(war) == ["environment", "politics"]
    raid = event("world_event", text="Raid", facts={"event": "attack", "faction_a": "orcs", "faction_b": "guards"})
    assert systems_for(raid) == ["environment", "politics"]
    invasion = event("world_event", text="Orcs invade", facts={"event": "invasion", "map": "prt_fild08"})
    assert systems_for(invasion) == ["environment", "economy"]
    # What the bridge reports from the game's own tables goes only where it counts.
    castle = event("world_event", text="Taken", facts={"event": "castle", "map": "prtg_cas01", "owner": "guild_7"})
    assert systems_for(castle) == ["politics"]
    sale = event("world_event", text="Sold", facts={"event": "vending_sale", "sold_item": 501, "sold_amount": 3})
    assert systems_for(sale) == ["economy"]
    taken = event("world_event", text="Aria takes it", player=ARIA, facts={"quest_id": "q1", "quest_step": "taken"})
    assert systems_for(taken) == ["environment", "quests"]
    assert systems_for(event("player_nearby", player=ARIA)) == []


async def test_an_event_is_routed_once_and_the_inbox_keeps_its_cap(redis_client, keys):
    inbox = WorldInbox(redis_client, keys, CoordinatorSettings(inbox_max_len=100))
    kill = event("player_killed_monster", player=ARIA)
    assert await inbox.route(kill, npc_id="hunter_kai", map_name="prt_fild08") == ["quests"]
    assert await inbox.route(kill, npc_id="hunter_kai", map_name="prt_fild08") == []
    [entry] = await inbox.entries("quests")
    assert (entry["npc_id"], entry["map"], "faction" in entry) == ("hunter_kai", "prt_fild08", False)
    assert json.loads(entry["event"])["event_id"] == "e-player_killed_monster"
    for number in range(150):
        await inbox.route(kill.model_copy(update={"event_id": f"kill-{number}"}))
    kept = await inbox.entries("quests")
    assert len(kept) == 100 and json.loads(kept[-1]["event"])["event_id"] == "kill-149"
    assert await redis_client.ttl(keys.world_inbox_routed("quests", "kill-149")) > 0
