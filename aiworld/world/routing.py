"""Routing game events to the world systems that care, so that their next cycle sees them.

A trade an NPC merchant made goes to the economy, an attack on a faction's NPC to politics, kills
and items handed over to the quests (progress), announcements of the world to the environment,
and to the economy (sales, supply shocks, invasions) and politics (factions, castle owners) when
their facts are those systems' business. Each system reads its `world:{system}:inbox` stream.

Routed where the event enters the service — the API, once it has reached its NPC — because that
is where every event passes exactly once *per id*: a retried request carries the same id, and the
append is skipped atomically when that id was routed already. (The NPC's outcome save would see
each event once too, but only after the NPC woke, and a paused NPC would hold the economy's news.)
"""

from __future__ import annotations

import redis.asyncio as redis

from aiworld.config import CoordinatorSettings
from aiworld.models import GameEvent, GameEventKind
from aiworld.store.keys import Keys, text_of

WORLD_SYSTEMS = ("economy", "politics", "environment", "quests")
UNALIGNED = "none"  # NpcProfile.faction of an NPC of no faction

# Append once per event id: the marker and the entry are written together or not at all.
_ROUTE_ONCE = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then return false end
local fields = {}
for index = 3, #ARGV do fields[#fields + 1] = ARGV[index] end
return redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', unpack(fields))
"""


def systems_for(event: GameEvent, *, action_kind: str | None = None, faction: str | None = None) -> list[str]:
    """The world systems an event concerns (none for most: a greeting changes no economy)."""
    match event.kind:
        case GameEventKind.ACTION_RESULT if action_kind == "trade" and event.outcome == "done":
            return ["economy"]
        case GameEventKind.PLAYER_ATTACKED if faction and faction != UNALIGNED:
            return ["politics"]
        case GameEventKind.PLAYER_KILLED_MONSTER | GameEventKind.ITEM_RECEIVED:
            return ["quests"]
        case GameEventKind.WORLD_EVENT:
            return _systems_for_news(event.facts or {})
    return []


# Facts of a world event that the economy or politics acts on (README: what each inbox accepts).
_MARKET_FACTS = ("sold_item", "supply_item")
_POLITICAL_FACTS = ("faction", "factions", "faction_a", "faction_b")
_POLITICAL_EVENTS = ("attack", "gift", "peace", "castle", "quest_done")
# Bookkeeping the bridge reports (a player's sale, a castle's owner): no news for the weather.
_RECORDS = ("sold_item",)
_RECORD_EVENTS = ("castle",)


def _systems_for_news(facts: dict[str, str | int | float]) -> list[str]:
    kind = facts.get("event")
    record = kind in _RECORD_EVENTS or any(name in facts for name in _RECORDS)
    systems = [] if record else ["environment"]
    if kind == "invasion" or any(name in facts for name in _MARKET_FACTS):
        systems.append("economy")
    if kind in _POLITICAL_EVENTS or any(name in facts for name in _POLITICAL_FACTS):
        systems.append("politics")
    if "quest_step" in facts:  # a player took a quest (the NPC's dialogue or the game says so)
        systems.append("quests")
    return systems


class WorldInbox:
    def __init__(self, client: redis.Redis, keys: Keys, settings: CoordinatorSettings) -> None:
        self._redis = client
        self._keys = keys
        self._settings = settings
        self._route_once = client.register_script(_ROUTE_ONCE)

    async def route(
        self,
        event: GameEvent,
        *,
        npc_id: str | None = None,
        map_name: str | None = None,
        faction: str | None = None,
        action_kind: str | None = None,
    ) -> list[str]:
        """Append the event to each concerned system's inbox once; returns the systems it was added to now."""
        fields = {"event": event.model_dump_json(exclude_none=True)}
        for name, value in (("npc_id", npc_id), ("map", map_name), ("faction", faction)):
            if value:
                fields[name] = value
        flat = [part for pair in fields.items() for part in pair]
        added = []
        for system in systems_for(event, action_kind=action_kind, faction=faction):
            entry = await self._route_once(
                keys=[self._keys.world_inbox(system), self._keys.world_inbox_routed(system, event.event_id)],
                args=[self._settings.inbox_max_len, self._settings.route_dedupe_seconds, *flat],
            )
            if entry is not None:
                added.append(system)
        return added

    async def route_npc_event(self, npc_id: str, event: GameEvent, action_kind: str | None = None) -> list[str]:
        """Route an event one NPC heard, with where the NPC lives and its faction (from `npc:{id}`)."""
        map_name, faction = await self._redis.hmget(self._keys.npc(npc_id), ["map", "faction_id"])
        return await self.route(
            event,
            npc_id=npc_id,
            map_name=text_of(map_name) if map_name is not None else None,
            faction=text_of(faction) if faction is not None else None,
            action_kind=action_kind,
        )

    async def entries(self, system: str) -> list[dict[str, str]]:
        """Everything in a system's inbox, oldest first (for the world cycles and tests)."""
        stream = await self._redis.xrange(self._keys.world_inbox(system)) or []
        return [{text_of(k): text_of(v) for k, v in (fields or {}).items()} for _, fields in stream]
