"""Where every NPC lives, kept in the state store: who is on a map, near a point, in a faction.

The event coordinator finds a scope's recipients here and NPCs find their neighbours here. It is
written with the `npc:{id}` hash each time an NPC's outcome is saved, so it follows the NPC's moves.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis.asyncio as redis

from aiworld.store.keys import Keys, text_of


class NpcDirectory:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        positions_fresh_for: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`positions_fresh_for`: seconds a map's positions, once read, are used again without
        reading them (0: read every time). A map's whole list is read and parsed to find who is
        near a point, and NPCs move only when an operator configures them."""
        self._redis = client
        self._keys = keys
        self._fresh_for = positions_fresh_for
        self._clock = clock
        self._positions: dict[str, tuple[float, dict[str, tuple[int, int]]]] = {}

    async def place(
        self, npc_id: str, map_name: str, x: int, y: int, faction: str, record: Mapping[str, Any] | None = None
    ) -> None:
        """Idempotent: the NPC is listed once, on its current map and in its current faction. With
        `record`, the NPC's `npc:{id}` hash is written too, in the same round trip while the NPC
        stays where it was (nearly always). Its `map` and `faction_id` fields name where it was
        listed before: they change only together with the old listing's removal, so a place cut
        short and run again still finds and removes it."""
        npc_key = self._keys.npc(npc_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hmget(npc_key, ["map", "faction_id"])
            pipe.hset(self._keys.map_npcs(map_name), npc_id, f"{x},{y}")
            pipe.sadd(self._keys.faction_members(faction), npc_id)
            pipe.hset(self._keys.all_npcs(), npc_id, map_name)
            if record:
                rest = {field: value for field, value in record.items() if field not in ("map", "faction_id")}
                pipe.hset(npc_key, mapping=rest)  # type: ignore[arg-type]  # redis-py's mapping type is invariant
            (previous_map, previous_faction), *_ = await pipe.execute()
        moved = previous_map is None or text_of(previous_map) != map_name
        changed_faction = previous_faction is None or text_of(previous_faction) != faction
        if not (moved or changed_faction):
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            if moved and previous_map is not None:
                pipe.hdel(self._keys.map_npcs(text_of(previous_map)), npc_id)
            if changed_faction and previous_faction is not None:
                pipe.srem(self._keys.faction_members(text_of(previous_faction)), npc_id)
            if record:
                pipe.hset(npc_key, mapping={"map": map_name, "faction_id": faction})
            await pipe.execute()

    async def remove(self, npc_id: str) -> None:
        map_name, faction = await self._redis.hmget(self._keys.npc(npc_id), ["map", "faction_id"])
        async with self._redis.pipeline(transaction=True) as pipe:
            if map_name is not None:
                pipe.hdel(self._keys.map_npcs(text_of(map_name)), npc_id)
            if faction is not None:
                pipe.srem(self._keys.faction_members(text_of(faction)), npc_id)
            pipe.hdel(self._keys.all_npcs(), npc_id)
            await pipe.execute()

    async def on_map(self, map_name: str) -> dict[str, tuple[int, int]]:
        """npc_id -> (x, y) of every NPC on the map (not to be changed by the caller: it may be
        served again while fresh)."""
        if self._fresh_for > 0:
            read = self._positions.get(map_name)
            if read is not None and self._clock() - read[0] < self._fresh_for:
                return read[1]
        positions: dict[str, tuple[int, int]] = {}
        for npc_id, cell in (await self._redis.hgetall(self._keys.map_npcs(map_name))).items():
            x, _, y = text_of(cell).partition(",")
            try:
                positions[text_of(npc_id)] = (int(x), int(y))
            except ValueError:
                continue  # a damaged entry is rewritten by the NPC's next save
        if self._fresh_for > 0:
            self._positions[map_name] = (self._clock(), positions)
        return positions

    async def near(self, map_name: str, x: int, y: int, radius: int) -> list[str]:
        """NPCs within `radius` cells (Euclidean, as rAthena's areas are drawn) of (x, y), sorted."""
        return sorted(
            npc_id for npc_id, (nx, ny) in (await self.on_map(map_name)).items() if math.hypot(nx - x, ny - y) <= radius
        )

    async def in_faction(self, faction: str) -> list[str]:
        return sorted(text_of(member) for member in await self._redis.smembers(self._keys.faction_members(faction)))

    async def everyone(self) -> dict[str, str]:
        """npc_id -> map of every listed NPC."""
        return {text_of(k): text_of(v) for k, v in (await self._redis.hgetall(self._keys.all_npcs())).items()}

    async def maps(self) -> list[str]:
        return sorted(set((await self.everyone()).values()))

    async def is_listed(self, npc_id: str) -> bool:
        return bool(await self._redis.hexists(self._keys.all_npcs(), npc_id))

    async def count_on_map(self, map_name: str) -> int:
        return await self._redis.hlen(self._keys.map_npcs(map_name))

    async def count_in_faction(self, faction: str) -> int:
        return await self._redis.scard(self._keys.faction_members(faction))

    async def count_everyone(self) -> int:
        return await self._redis.hlen(self._keys.all_npcs())
