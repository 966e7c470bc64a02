"""The queue of actions waiting for the game, in the state store.

Each action lives in `action:{id}` (payload, status, attempts) and its id sits in two sorted sets,
the NPC's `npc:{id}:actions` and the global `actions:ready`, scored by the time from which it may be
offered. Claiming an action leases it (moves the score forward); an unacknowledged action is
offered again when its lease runs out; a result removes it. Every step is one Lua script, so two
API processes never hand out the same action at once, and enqueueing an id that was ever seen
(queued, delivered or finished) does nothing, which makes the enqueue activity safe to re-run
after a retry or a `temporal workflow reset`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import redis.asyncio as redis

from aiworld.models import QueuedAction
from aiworld.store.keys import Keys, text_of
from aiworld.store.scripts import run_script_batch

# How long a finished action's id is remembered so that a late re-run cannot queue it again.
FINISHED_RETENTION_SECONDS = 14 * 24 * 3600

_ENQUEUE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'payload', ARGV[1], 'status', 'queued', 'attempts', 0, 'npc_id', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[4])
return 1
"""

# Every key a script touches is declared in KEYS: DragonflyDB (the production store) refuses
# undeclared keys by default. So a claim is two steps: the candidates and their NPCs are read
# first, then one script leases those that are still offerable, checking each again, so two API
# processes racing for the same ids never both get one.
# KEYS: ready set, then per candidate its action key and its NPC's queue.
# ARGV: now, lease_until, then the candidate ids in the order of KEYS.
_CLAIM = """
local claimed = {}
for i = 1, #ARGV - 2 do
  local id = ARGV[i + 2]
  local key, npc_queue = KEYS[2 * i], KEYS[2 * i + 1]
  local offered_from = redis.call('ZSCORE', KEYS[1], id)
  if offered_from and tonumber(offered_from) <= tonumber(ARGV[1]) then
    if redis.call('EXISTS', key) == 1 then
      redis.call('ZADD', npc_queue, ARGV[2], id)
      redis.call('ZADD', KEYS[1], ARGV[2], id)
      redis.call('HSET', key, 'status', 'leased')
      local attempts = redis.call('HINCRBY', key, 'attempts', 1)
      table.insert(claimed, id)
      table.insert(claimed, redis.call('HGET', key, 'payload'))
      table.insert(claimed, attempts)
    else
      redis.call('ZREM', KEYS[1], id)
      redis.call('ZREM', npc_queue, id)
    end
  end
end
return claimed
"""

_COMPLETE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if status == 'done' or status == 'failed' then
  if status == ARGV[1] then return 0 end
  return -2
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'detail', ARGV[2], 'finished_at', ARGV[3])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
redis.call('ZREM', KEYS[2], ARGV[5])
redis.call('ZREM', KEYS[3], ARGV[5])
return 1
"""

Outcome = Literal["done", "failed"]


@dataclass(frozen=True)
class ClaimedAction:
    action: QueuedAction
    attempts: int


class UnknownAction(LookupError):
    pass


class ConflictingResult(ValueError):
    """A second result that contradicts the first (done after failed, or the reverse)."""


def _epoch(moment: datetime | None) -> float:
    return (moment or datetime.now(UTC)).timestamp()


class ActionQueue:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys
        self._enqueue = client.register_script(_ENQUEUE)
        self._claim = client.register_script(_CLAIM)
        self._complete = client.register_script(_COMPLETE)

    async def enqueue(self, action: QueuedAction) -> bool:
        """Queue an action once. False when its id was already queued, delivered or finished."""
        return (await self.enqueue_all([action]))[0]

    async def enqueue_all(self, actions: list[QueuedAction]) -> list[bool]:
        """Queue each action once, all in one round trip; True for each queued now."""
        added = await run_script_batch(
            self._redis,
            self._enqueue,
            [
                (
                    [
                        self._keys.action(action.action_id),
                        self._keys.action_queue(action.npc_id),
                        self._keys.ready_actions(),
                    ],
                    [action.model_dump_json(), _epoch(action.created_at), action.npc_id, action.action_id],
                )
                for action in actions
            ],
        )
        return [bool(one) for one in added]

    async def claim(
        self,
        *,
        npc_id: str | None = None,
        limit: int = 50,
        lease_seconds: float = 30.0,
        now: datetime | None = None,
    ) -> list[ClaimedAction]:
        """Lease up to `limit` offerable actions of one NPC (or of all NPCs), oldest first."""
        moment = _epoch(now)
        source = self._keys.action_queue(npc_id) if npc_id else self._keys.ready_actions()
        ids = [text_of(i) for i in await self._redis.zrangebyscore(source, "-inf", moment, start=0, num=limit)]
        if not ids:
            return []
        keys = [self._keys.ready_actions()]
        async with self._redis.pipeline(transaction=False) as pipe:
            for action_id in ids:
                pipe.hget(self._keys.action(action_id), "npc_id")
            npc_ids = await pipe.execute()
        for action_id, owner in zip(ids, npc_ids, strict=True):
            keys.append(self._keys.action(action_id))
            # An action that is gone (expired) has no owner to read: the script drops its id from
            # the ready set and from the queue named here, the claiming NPC's when there is one.
            keys.append(self._keys.action_queue(text_of(owner) if owner is not None else (npc_id or "_gone")))
        flat = await self._claim(keys=keys, args=[moment, moment + lease_seconds, *ids])
        claimed = []
        for index in range(0, len(flat), 3):
            claimed.append(
                ClaimedAction(QueuedAction.model_validate_json(text_of(flat[index + 1])), int(flat[index + 2]))
            )
        return claimed

    async def complete(self, action_id: str, outcome: Outcome, detail: str = "", now: datetime | None = None) -> bool:
        """Record an action's result. True the first time; False for the same result again."""
        key = self._keys.action(action_id)
        npc_id = await self._redis.hget(key, "npc_id")
        if npc_id is None:
            raise UnknownAction(action_id)
        npc_id = text_of(npc_id)
        result = await self._complete(
            keys=[key, self._keys.action_queue(npc_id), self._keys.ready_actions()],
            args=[outcome, detail, _epoch(now), FINISHED_RETENTION_SECONDS, action_id],
        )
        if result == -1:
            raise UnknownAction(action_id)
        if result == -2:
            raise ConflictingResult(f"action {action_id} already has a different result")
        return result == 1

    async def record_shop_price(self, npc_id: str, item_id: int, price: int) -> None:
        """The price the game now sells an item at in the NPC's shop (`shop:{item}` of `npc:{id}`),
        once the game confirmed the trade action: what the coherence monitor compares with the
        economy's price."""
        await self._redis.hset(self._keys.npc(npc_id), f"shop:{item_id}", price)

    async def status(self, action_id: str) -> dict[str, str] | None:
        raw = await self._redis.hgetall(self._keys.action(action_id))
        if not raw:
            return None
        return {text_of(k): text_of(v) for k, v in raw.items()}

    async def pending(self, npc_id: str) -> list[QueuedAction]:
        """Every undelivered or unacknowledged action of one NPC, without leasing them."""
        ids = await self._redis.zrange(self._keys.action_queue(npc_id), 0, -1)
        actions = []
        for action_id in ids:
            payload = await self._redis.hget(self._keys.action(text_of(action_id)), "payload")
            if payload is not None:
                actions.append(QueuedAction.model_validate_json(payload))
        return actions
