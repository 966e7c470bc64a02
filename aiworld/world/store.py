"""The world systems' state in the store: read a cycle's inputs, write its outcome once, read history.

A cycle's whole write is one Lua script guarded by the cycle id (a set of applied cycles) and by the
inbox cursor the cycle read from: a re-run finds its id and writes nothing, a cycle that read a
stale cursor writes nothing either. The script checks the type of every key before its first write,
so a fault it can see leaves the previous state whole (Redis does not undo a script's earlier writes).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as redis
from pydantic import ValidationError

from aiworld.models import GameEvent, NpcProfile
from aiworld.store.keys import Keys, text_of
from aiworld.world.cycle import CURSOR_FIELD, CYCLE_AT_FIELD, CYCLE_FIELD, CycleOutcome, InboxEntry
from aiworld.world.directory import NpcDirectory

APPLIED_CYCLES_KEPT = 2_000
OUTCOME_TTL_SECONDS = 7 * 24 * 3600
INBOX_MAX_ENTRIES = 20_000  # a system that stopped cycling does not grow its inbox without end
PROFILE_FIELD = "profile"  # the NPC's whole profile, JSON, in its `npc:{id}` hash


async def published_profiles(client: redis.Redis, keys: Keys, npc_ids: list[str]) -> dict[str, NpcProfile]:
    """The profiles the NPCs' lives last published, in the order asked; an NPC without one (or
    with one this version cannot read, rewritten at its next save) is left out."""
    if not npc_ids:
        return {}
    async with client.pipeline(transaction=False) as pipe:
        for npc_id in npc_ids:
            pipe.hget(keys.npc(npc_id), PROFILE_FIELD)
        found = await pipe.execute()
    profiles = {}
    for npc_id, raw in zip(npc_ids, found, strict=True):
        if raw is None:
            continue
        try:
            profiles[npc_id] = NpcProfile.model_validate_json(text_of(raw))
        except ValidationError:
            continue
    return profiles


_APPLY = """
local plan = cjson.decode(ARGV[1])
if redis.call('ZSCORE', KEYS[1], plan.cycle) then return 0 end
for _, check in ipairs(plan.types) do
  local found = redis.call('TYPE', KEYS[check[1]])['ok']
  if found ~= 'none' and found ~= check[2] then
    return redis.error_reply('WRONGTYPE ' .. KEYS[check[1]] .. ' holds a ' .. found .. ', not a ' .. check[2])
  end
end
local cursor = redis.call('HGET', KEYS[4], plan.cursor_field)
if not cursor then cursor = '' end
if cursor ~= plan.expected_cursor then return -1 end
for _, write in ipairs(plan.hset) do
  if #write[2] > 0 then redis.call('HSET', KEYS[write[1]], unpack(write[2])) end
end
for _, gone in ipairs(plan.hdel) do
  if #gone[2] > 0 then redis.call('HDEL', KEYS[gone[1]], unpack(gone[2])) end
end
for _, add in ipairs(plan.zadd) do redis.call('ZADD', KEYS[add[1]], add[2], add[3]) end
for _, rem in ipairs(plan.zrem) do redis.call('ZREM', KEYS[rem[1]], rem[2]) end
for _, ttl in ipairs(plan.expire) do redis.call('EXPIRE', KEYS[ttl[1]], ttl[2]) end
for _, entry in ipairs(plan.xadd) do
  redis.call('XADD', KEYS[entry[1]], 'MAXLEN', '~', entry[2], '*', unpack(entry[3]))
end
for _, entry in ipairs(plan.history) do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', plan.history_cap, '*', unpack(entry))
end
redis.call('SET', KEYS[3], plan.outcome, 'EX', plan.outcome_ttl)
redis.call('ZADD', KEYS[1], plan.now, plan.cycle)
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -plan.applied_cap - 1)
return 1
"""


class CursorMoved(RuntimeError):
    """Another cycle of the system wrote since this one read: its inputs are stale."""


class WorldStore:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys
        self._apply = client.register_script(_APPLY)
        self.directory = NpcDirectory(client, keys)

    async def state(self, system: str) -> dict[str, str]:
        return {text_of(k): text_of(v) for k, v in (await self._redis.hgetall(self._keys.world(system))).items()}

    async def applied(self, system: str, cycle_id: str) -> CycleOutcome | None:
        if await self._redis.zscore(self._keys.world_cycles(system), cycle_id) is None:
            return None
        stored = await self._redis.get(self._keys.world_cycle_outcome(system, cycle_id))
        if stored is None:  # applied so long ago that its outcome expired: nothing left to repeat
            return CycleOutcome(cycle_id=cycle_id, system=system, at=datetime.now(UTC), cursor="")
        return CycleOutcome.model_validate_json(stored)

    async def inbox(self, system: str, cursor: str, batch: int) -> tuple[list[InboxEntry], str, int]:
        """Entries after `cursor` (at most `batch`), the cursor after them, and how many were refused
        (not a valid game event: skipped, never retried forever, and counted in the history)."""
        start = f"({cursor}" if cursor else "-"
        entries: list[InboxEntry] = []
        refused = 0
        last = cursor
        found = await self._redis.xrange(self._keys.world_inbox(system), min=start, count=batch)
        for entry_id, values in found or []:
            last = text_of(entry_id)
            fields = {text_of(k): text_of(v) for k, v in (values or {}).items()}
            try:
                entries.append(
                    InboxEntry(
                        entry_id=last,
                        event=GameEvent.model_validate_json(fields.get("event", "")),
                        npc_id=fields.get("npc_id") or None,
                        map=fields.get("map") or None,
                        faction=fields.get("faction") or None,
                    )
                )
            except ValidationError:
                refused += 1
        return entries, last, refused

    async def npcs(self) -> list[NpcProfile]:
        """Every listed NPC whose profile its life published (sorted by id)."""
        ids = sorted(await self.directory.everyone())
        return list((await published_profiles(self._redis, self._keys, ids)).values())

    async def open_quests(self) -> dict[str, dict[str, str]]:
        ids = [text_of(member) for member in await self._redis.zrange(self._keys.open_quests(), 0, -1)]
        if not ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for quest_id in ids:
                pipe.hgetall(self._keys.quest(quest_id))
            found = await pipe.execute()
        return {
            quest_id: {text_of(k): text_of(v) for k, v in values.items()}
            for quest_id, values in zip(ids, found, strict=True)
            if values
        }

    async def factions(self, names: set[str]) -> dict[str, dict[str, str]]:
        result = {}
        for name in sorted(names):
            values = await self._redis.hgetall(self._keys.faction(name))
            result[name] = {text_of(k): text_of(v) for k, v in values.items()}
        return result

    async def apply(self, outcome: CycleOutcome, expected_cursor: str, history_cap: int) -> bool:
        """Write the outcome once: True when written now, False when this cycle was written before."""
        system, write = outcome.system, outcome.write
        keys: list[str] = [
            self._keys.world_cycles(system),
            self._keys.world_history(system),
            self._keys.world_cycle_outcome(system, outcome.cycle_id),
            self._keys.world(system),
        ]
        types: list[list[Any]] = [[1, "zset"], [2, "stream"], [4, "hash"]]

        def index(key: str, kind: str) -> int:
            if key not in keys:
                keys.append(key)
                types.append([len(keys), kind])
            return keys.index(key) + 1

        state = {
            **write.state,
            CURSOR_FIELD: outcome.cursor,
            CYCLE_FIELD: outcome.cycle_id,
            CYCLE_AT_FIELD: outcome.at.isoformat(),
        }
        hset: list[list[Any]] = [[4, _flat(state)]]
        hdel: list[list[Any]] = [[4, sorted(write.state_deleted)]]
        for faction, fields in sorted(write.factions.items()):
            at = index(self._keys.faction(faction), "hash")
            hset.append([at, _flat({k: v for k, v in fields.items() if v != ""})])
            hdel.append([at, sorted(k for k, v in fields.items() if v == "")])
        expire: list[list[Any]] = []
        for quest_id, fields in sorted(write.quests.items()):
            at = index(self._keys.quest(quest_id), "hash")
            hset.append([at, _flat(fields)])
            if quest_id in write.closed_quests:
                expire.append([at, OUTCOME_TTL_SECONDS])  # kept a week for the record, then gone
        zadd: list[list[Any]] = []
        zrem: list[list[Any]] = []
        if write.open_quests or write.closed_quests:
            at = index(self._keys.open_quests(), "zset")
            zadd = [[at, expiry, quest_id] for quest_id, expiry in sorted(write.open_quests.items())]
            zrem = [[at, quest_id] for quest_id in sorted(write.closed_quests)]
        xadd: list[list[Any]] = []
        for target, events in sorted(write.forwarded.items()):
            at = index(self._keys.world_inbox(target), "stream")
            xadd += [[at, INBOX_MAX_ENTRIES, ["event", event.model_dump_json()]] for event in events]
        history = [
            _flat(
                {
                    "cycle": outcome.cycle_id,
                    "at": outcome.at.isoformat(),
                    "what": change.what,
                    "before": change.before or "",
                    "after": change.after or "",
                    "why": change.why,
                    "text": change.text,
                    "importance": str(change.importance),
                    "facts": json.dumps(change.facts, sort_keys=True),
                }
            )
            for change in outcome.changes
        ]
        plan = {
            "cycle": outcome.cycle_id,
            "cursor_field": CURSOR_FIELD,
            "expected_cursor": expected_cursor,
            "now": outcome.at.timestamp(),
            "applied_cap": APPLIED_CYCLES_KEPT,
            "outcome": outcome.model_dump_json(),
            "outcome_ttl": OUTCOME_TTL_SECONDS,
            "history_cap": history_cap,
            "history": history,
            "hset": hset,
            "hdel": hdel,
            "zadd": zadd,
            "zrem": zrem,
            "expire": expire,
            "xadd": xadd,
            "types": types,
        }
        written = int(await self._apply(keys=keys, args=[json.dumps(plan)]))
        if written == -1:
            raise CursorMoved(f"another {system} cycle wrote since cycle {outcome.cycle_id} read its inbox")
        return written == 1

    async def history(
        self, system: str, since: datetime | None, until: datetime | None, limit: int
    ) -> list[dict[str, str]]:
        """The newest `limit` entries between since and until, oldest first, with their stream ids."""
        newest = str(int(until.timestamp() * 1000)) if until else "+"
        oldest = str(int(since.timestamp() * 1000)) if since else "-"
        found = await self._redis.xrevrange(self._keys.world_history(system), max=newest, min=oldest, count=limit)
        return [
            {"id": text_of(entry_id), **{text_of(k): text_of(v) for k, v in (values or {}).items()}}
            for entry_id, values in reversed(found or [])
        ]


def _flat(fields: dict[str, str]) -> list[str]:
    return [item for pair in sorted(fields.items()) for item in pair]
