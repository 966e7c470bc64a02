"""The world feed: a bounded stream of what NPCs say and do, for viewers to follow live.

Written by the activity that saves each decision's outcome (the state the service writes anyway),
read by the API's viewer stream with a blocking XREAD: a viewer costs one store connection, never
a query to every NPC's workflow. Each entry is appended once per id (an action id, or an NPC's
decision sequence), so an activity that runs again after a retry or a reset adds nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis

from aiworld.models import DecisionRecord, QueuedAction
from aiworld.store.keys import Keys, text_of
from aiworld.store.scripts import run_script_batch

# About an hour of a busy 1,000-NPC world: enough to fill a page that opens, bounded in memory.
FEED_LENGTH = 10_000
# How long an entry's id is remembered against a second append (a retried activity comes sooner).
APPENDED_RETENTION_SECONDS = 24 * 3600

# KEYS: the feed stream, the entry's "appended" marker. ARGV: entry JSON, max length, marker TTL.
_APPEND_ONCE = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', tonumber(ARGV[3])) then return false end
return redis.call('XADD', KEYS[1], 'MAXLEN', tonumber(ARGV[2]), '*', 'entry', ARGV[1])
"""


@dataclass(frozen=True)
class FeedItem:
    stream_id: str
    entry: dict[str, Any]


def action_entry(queued: QueuedAction) -> dict[str, Any]:
    """What a viewer needs of an action: who, where, what, and the words when there are any."""
    action = queued.action.model_dump()
    return {
        "type": "action",
        "id": queued.action_id,
        "npc_id": queued.npc_id,
        "npc_name": queued.npc_name,
        "map": queued.map,
        "at": queued.created_at.isoformat(),
        "reason": queued.reason,
        **action,
    }


def decision_entry_id(npc_id: str, sequence: int) -> str:
    return f"{npc_id}-{sequence}-decided"


def decision_entry(npc_id: str, map_name: str, fields: dict[str, str], decision: DecisionRecord) -> dict[str, Any]:
    """An NPC's public state after a decision (mood, activity, players near) and who decided."""
    return {
        "type": "npc",
        "id": decision_entry_id(npc_id, decision.sequence),
        "npc_id": npc_id,
        "map": map_name,
        "mood": fields.get("mood") or decision.decision.mood,
        "activity": fields.get("action") or decision.decision.activity,
        "reason": fields.get("reason") or decision.decision.reason,
        "players_near": json.loads(fields.get("players_near") or "[]"),
        "sequence": decision.sequence,
        "trigger": decision.trigger,
        "decided_by": decision.usage.provider,
        "at": decision.decided_at.isoformat(),
    }


class WorldFeed:
    def __init__(self, client: redis.Redis, keys: Keys, length: int = FEED_LENGTH) -> None:
        self._redis = client
        self._keys = keys
        self._length = length
        self._append = client.register_script(_APPEND_ONCE)

    async def publish(self, entries: Iterable[dict[str, Any]]) -> set[str]:
        """Append each entry whose `id` was not appended before, all in one round trip; returns the
        ids appended now."""
        listed = list(entries)
        added = await run_script_batch(
            self._redis,
            self._append,
            [
                (
                    [self._keys.feed(), self._keys.feed_appended(entry["id"])],
                    [json.dumps(entry, separators=(",", ":")), self._length, APPENDED_RETENTION_SECONDS],
                )
                for entry in listed
            ],
        )
        return {entry["id"] for entry, appended in zip(listed, added, strict=True) if appended}

    async def latest(self, count: int) -> list[FeedItem]:
        """The newest `count` entries, oldest first."""
        rows: Any = await self._redis.xrevrange(self._keys.feed(), count=count)
        return [item for row in reversed(rows) if (item := _item(row)) is not None]

    async def after(self, stream_id: str, block_ms: int, count: int = 200) -> list[FeedItem]:
        """Entries after `stream_id` ("$" for only new ones), waiting up to `block_ms` for one."""
        answer: Any = await self._redis.xread({self._keys.feed(): stream_id}, block=block_ms, count=count)
        rows = answer[0][1] if answer else []
        return [item for row in rows if (item := _item(row)) is not None]

    async def last_id(self) -> str:
        rows: Any = await self._redis.xrevrange(self._keys.feed(), count=1)
        return text_of(rows[0][0]) if rows else "0-0"


def _item(row: Any) -> FeedItem | None:
    stream_id, fields = row
    raw = {text_of(key): text_of(value) for key, value in fields.items()}.get("entry")
    try:
        entry = json.loads(raw) if raw is not None else None
    except json.JSONDecodeError:
        entry = None
    # A foreign or damaged entry is skipped: one bad row must not end every viewer's stream.
    return FeedItem(text_of(stream_id), entry) if isinstance(entry, dict) else None
