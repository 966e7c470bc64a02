"""An NPC's memories, relationships and public state in the state store (DESIGN.md §5, §8).

Every write is idempotent — memories are keyed by ids derived from the decision sequence, and a
relationship change is applied once per change id — because activities run again after a retry
or a `temporal workflow reset`.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime

import redis.asyncio as redis
from pydantic import ValidationError

from aiworld.models import Memory, NpcProfile, describe_invalid
from aiworld.store.keys import Keys, text_of
from aiworld.world.directory import NpcDirectory
from aiworld.world.store import PROFILE_FIELD

log = logging.getLogger(__name__)

# Generative Agents' retrieval: recency decays 0.99 per hour; importance 1..10; relevance here is
# "the memory is about the party in front of me", which is what dialogue needs most.
RECENCY_DECAY_PER_HOUR = 0.99
CANDIDATES_SCANNED = 60

_ADD_MEMORY = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'json', ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return 1
"""

# Apply a relationship change once per change id, clamped to -100..100.
_ADJUST_RELATIONSHIP = """
if redis.call('HSETNX', KEYS[2], 'change:' .. ARGV[2], ARGV[3]) == 0 then
  return tonumber(redis.call('HGET', KEYS[1], ARGV[1])) or 0
end
-- A score that is not a number (a damaged record) counts as 0 rather than failing every write.
local score = (tonumber(redis.call('HGET', KEYS[1], ARGV[1])) or 0) + tonumber(ARGV[3])
if score > 100 then score = 100 elseif score < -100 then score = -100 end
redis.call('HSET', KEYS[1], ARGV[1], score)
redis.call('HSET', KEYS[2], 'score', score, 'last_reason', ARGV[4])
return score
"""


class MemoryStore:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys
        self._directory = NpcDirectory(client, keys)
        self._add = client.register_script(_ADD_MEMORY)
        self._adjust = client.register_script(_ADJUST_RELATIONSHIP)

    async def remember(self, npc_id: str, memory: Memory) -> bool:
        """Store a memory once; False when that memory id exists already."""
        added = await self._add(
            keys=[self._keys.memory(npc_id, memory.memory_id), self._keys.memory_index(npc_id)],
            args=[memory.model_dump_json(), memory.created_at.timestamp(), memory.memory_id],
        )
        return bool(added)

    async def recall(self, npc_id: str, *, now: datetime, about: str | None = None, limit: int = 8) -> list[Memory]:
        """The most relevant memories: recency, importance and whether they concern `about`."""
        ids = await self._redis.zrevrange(self._keys.memory_index(npc_id), 0, CANDIDATES_SCANNED - 1)
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for memory_id in ids:
                pipe.hget(self._keys.memory(npc_id, text_of(memory_id)), "json")
            raw = await pipe.execute()
        memories = []
        for memory_id, item in zip(ids, raw, strict=True):
            if not item:
                continue
            try:
                memories.append(Memory.model_validate_json(item))
            except ValidationError as error:
                # One damaged record must not cost the NPC all its memories (or its life).
                log.warning("skipping corrupt memory %s of %s: %s", text_of(memory_id), npc_id, describe_invalid(error))

        def score(memory: Memory) -> float:
            hours = max(0.0, (now - memory.created_at).total_seconds() / 3600)
            recency = math.pow(RECENCY_DECAY_PER_HOUR, hours)
            relevance = 1.0 if about is not None and memory.about == about else 0.0
            return recency + memory.importance / 10 + relevance

        return sorted(memories, key=score, reverse=True)[:limit]

    async def count(self, npc_id: str) -> int:
        return await self._redis.zcard(self._keys.memory_index(npc_id))

    async def adjust_relationship(self, npc_id: str, party: str, delta: int, change_id: str, reason: str) -> int:
        """Move the score toward `party` by `delta` once per `change_id`; returns the score."""
        return int(
            await self._adjust(
                keys=[self._keys.relationships(npc_id), self._keys.relationship(npc_id, party)],
                args=[party, change_id, delta, reason],
            )
        )

    async def relationships(self, npc_id: str, parties: list[str]) -> dict[str, int]:
        if not parties:
            return {}
        values = await self._redis.hmget(self._keys.relationships(npc_id), parties)
        scores = {}
        for party, value in zip(parties, values, strict=True):
            try:
                scores[party] = int(value) if value is not None else None
            except ValueError:
                log.warning("ignoring a damaged relationship score of %s toward %s: %r", npc_id, party, value)
        return {party: score for party, score in scores.items() if score is not None}

    async def publish_npc(self, profile: NpcProfile, fields: dict[str, str]) -> None:
        """The `npc:{id}` hash other processes read: who the NPC is and what it does now, and its
        place in the directory (read before the hash is rewritten: it names the NPC's last map)."""
        await self._directory.place(profile.npc_id, profile.map, profile.x, profile.y, profile.faction)
        await self._redis.hset(
            self._keys.npc(profile.npc_id),
            mapping={
                "name": profile.name,
                "map": profile.map,
                "x": profile.x,
                "y": profile.y,
                "personality": profile.personality.description,
                "faction_id": profile.faction,
                "wealth": profile.wealth,
                "goal": profile.goals[0] if profile.goals else "",
                PROFILE_FIELD: profile.model_dump_json(),  # what the world cycles act through
                **fields,  # type: ignore[dict-item]  # redis-py's mapping type is invariant; these are str
            },
        )

    async def world_state(self) -> dict[str, str]:
        """economy/politics/environment flattened to `system.key` for prompts and the offline policy."""
        state: dict[str, str] = {}
        for system in ("economy", "politics", "environment"):
            values = await self._redis.hgetall(self._keys.world(system))
            for key, value in values.items():
                state[f"{system}.{text_of(key)}"] = text_of(value)
        return state
