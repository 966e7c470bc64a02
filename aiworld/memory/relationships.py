"""The relationship graph: NPC<->NPC, NPC<->player and faction<->faction (DESIGN.md §5).

`relationships:{owner}` holds the owner's score toward each party (-100..100);
`relationship:{owner}:{party}` the details: score, type, interactions, the time of the last one,
its last reason and a bounded history. Owners are NPC ids or `faction:{id}`; parties are
`player:{char_id}`, `npc:{id}` or `faction:{id}`. A change applies once per change id: the id is
kept (with a TTL) so that a retried activity or a `temporal workflow reset` does not move the
score again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis.asyncio as redis
from pydantic import BaseModel

from aiworld.store.keys import Keys, text_of
from aiworld.store.scripts import run_script_batch

log = logging.getLogger(__name__)

_ADJUST = """
if not redis.call('SET', KEYS[3], ARGV[2], 'NX', 'EX', ARGV[5]) then
  return {tonumber(redis.call('HGET', KEYS[1], ARGV[1])) or 0, 0}
end
-- A score that is not a number (a damaged record) counts as 0 rather than failing every write.
local score = (tonumber(redis.call('HGET', KEYS[1], ARGV[1])) or 0) + tonumber(ARGV[2])
if score > 100 then score = 100 elseif score < -100 then score = -100 end
redis.call('HSET', KEYS[1], ARGV[1], score)
local history = {}
local ok, decoded = pcall(cjson.decode, redis.call('HGET', KEYS[2], 'history') or '[]')
if ok and type(decoded) == 'table' then history = decoded end
table.insert(history, 1, {at = ARGV[4], delta = tonumber(ARGV[2]), reason = ARGV[3], change = ARGV[6]})
while #history > tonumber(ARGV[7]) do table.remove(history) end
local interactions = redis.call('HINCRBY', KEYS[2], 'interactions', 1)
-- The type follows the new score (thresholds of relationship_type, given in ARGV 9-13).
local kind
if score >= tonumber(ARGV[9]) then kind = 'friend'
elseif score >= tonumber(ARGV[10]) then kind = 'friendly'
elseif score <= tonumber(ARGV[11]) then kind = 'enemy'
elseif score <= tonumber(ARGV[12]) then kind = 'rival'
elseif interactions >= tonumber(ARGV[13]) then kind = 'acquaintance'
else kind = 'neutral' end
redis.call('HSET', KEYS[2], 'score', score, 'last_reason', ARGV[3], 'last_interaction', ARGV[4],
  'history', cjson.encode(history), 'type', kind)
redis.call('SADD', KEYS[4], ARGV[8])
return {score, interactions}
"""

# Scores at or past these make friends, friendly parties, enemies and rivals; between them, this
# many dealings make an acquaintance. The store's script reads them too (ARGV 9-13).
FRIEND_AT, FRIENDLY_AT, ENEMY_AT, RIVAL_AT, ACQUAINTANCE_AFTER = 60, 25, -60, -25, 5


def relationship_type(score: int, interactions: int) -> str:
    """What the score and the history of dealings make of two parties."""
    if score >= FRIEND_AT:
        return "friend"
    if score >= FRIENDLY_AT:
        return "friendly"
    if score <= ENEMY_AT:
        return "enemy"
    if score <= RIVAL_AT:
        return "rival"
    return "acquaintance" if interactions >= ACQUAINTANCE_AFTER else "neutral"


@dataclass(frozen=True)
class RelationshipMove:
    """`owner`'s score toward `party` moves by `delta`, once per `change_id`."""

    owner: str
    party: str
    delta: int
    change_id: str
    reason: str
    at: datetime


class Relationship(BaseModel):
    party: str
    score: int
    type: str
    interactions: int = 0
    last_interaction: str | None = None
    last_reason: str | None = None
    history: list[dict[str, Any]] = []


class Relationships:
    def __init__(self, client: redis.Redis, keys: Keys, *, change_ttl_seconds: int, history_length: int) -> None:
        self._redis = client
        self._keys = keys
        self._ttl = change_ttl_seconds
        self._history_length = history_length
        self._adjust = client.register_script(_ADJUST)

    async def adjust(self, owner: str, party: str, delta: int, change_id: str, reason: str, at: datetime) -> int:
        """Move `owner`'s score toward `party` by `delta` once per `change_id`; returns the score."""
        return (await self.adjust_all([RelationshipMove(owner, party, delta, change_id, reason, at)]))[0]

    async def adjust_all(self, moves: list[RelationshipMove]) -> list[int]:
        """Each move once per its change id, in one round trip; returns the scores, in order."""
        answers = await run_script_batch(
            self._redis,
            self._adjust,
            [
                (
                    [
                        self._keys.relationships(move.owner),
                        self._keys.relationship(move.owner, move.party),
                        self._keys.relationship_change(move.owner, move.party, move.change_id),
                        self._keys.relationship_owners(),
                    ],
                    [
                        move.party,
                        move.delta,
                        move.reason,
                        move.at.isoformat(),
                        self._ttl,
                        move.change_id,
                        self._history_length,
                        move.owner,
                        FRIEND_AT,
                        FRIENDLY_AT,
                        ENEMY_AT,
                        RIVAL_AT,
                        ACQUAINTANCE_AFTER,
                    ],
                )
                for move in moves
            ],
        )
        return [int(score) for score, _ in answers]

    async def scores(self, owner: str, parties: list[str] | None = None) -> dict[str, int]:
        """Scores toward the given parties (all of them when None); damaged values are skipped."""
        pairs: list[tuple[str, object]]
        if parties is None:
            raw = await self._redis.hgetall(self._keys.relationships(owner))
            pairs = [(text_of(party), value) for party, value in raw.items()]
        elif parties:
            values = await self._redis.hmget(self._keys.relationships(owner), parties)
            pairs = list(zip(parties, values, strict=True))
        else:
            return {}
        scores = {}
        for party, value in pairs:
            if value is None:
                continue
            try:
                scores[party] = int(text_of(value))
            except ValueError:
                log.warning("ignoring a damaged relationship score of %s toward %s: %r", owner, party, value)
        return scores

    async def details(self, owner: str) -> list[Relationship]:
        """Every relationship of `owner`, strongest feeling first."""
        scores = await self.scores(owner)
        async with self._redis.pipeline(transaction=False) as pipe:
            for party in scores:
                pipe.hgetall(self._keys.relationship(owner, party))
            records = await pipe.execute()
        found = []
        for (party, score), record in zip(scores.items(), records, strict=True):
            fields = {text_of(k): text_of(v) for k, v in record.items()}
            try:
                history = json.loads(fields.get("history", "[]"))
            except ValueError:
                history = []
            interactions = int(fields["interactions"]) if fields.get("interactions", "").isdigit() else 0
            found.append(
                Relationship(
                    party=party,
                    score=score,
                    type=relationship_type(score, interactions),
                    interactions=interactions,
                    last_interaction=fields.get("last_interaction"),
                    last_reason=fields.get("last_reason"),
                    history=history if isinstance(history, list) else [],
                )
            )
        return sorted(found, key=lambda relationship: (-abs(relationship.score), relationship.party))

    async def owners(self) -> list[str]:
        return sorted(text_of(owner) for owner in await self._redis.smembers(self._keys.relationship_owners()))
