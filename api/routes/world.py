"""World memory over HTTP: what each world system changed, when and why (`world:{system}:history`).

The current state stays at `GET /ai/world/state`; this is its past.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

import redis.asyncio as redis
from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from aiworld.store.keys import Keys
from aiworld.world.store import WorldStore

MAX_HISTORY_PAGE = 500

WorldSystemName = Literal["economy", "politics", "environment", "quests"]


class HistoryEntry(BaseModel):
    id: str  # the stream id: milliseconds when it was written, then a sequence
    cycle: str
    at: datetime
    what: str
    before: str = ""
    after: str = ""
    why: str = ""
    text: str = ""
    importance: int = 1
    facts: str = "{}"  # JSON of the change's facts


class WorldHistory(BaseModel):
    system: str
    entries: list[HistoryEntry]


def register_world_routes(
    router: APIRouter, store: Callable[[], redis.Redis], keys: Keys, responses: dict[int | str, dict[str, Any]]
) -> None:
    @router.get("/ai/world/history", response_model=WorldHistory, tags=["world"], responses=responses)
    async def world_history(
        system: Annotated[WorldSystemName, Query(description="economy, politics, environment or quests")],
        since: Annotated[datetime | None, Query(description="oldest entry time (ISO 8601 with a zone)")] = None,
        until: Annotated[datetime | None, Query(description="newest entry time (ISO 8601 with a zone)")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_HISTORY_PAGE, description="the newest entries up to this many")] = 100,
    ) -> WorldHistory:
        """What a world system changed and why, oldest first: the newest `limit` entries in the range."""
        for name, moment in (("since", since), ("until", until)):
            if moment is not None and moment.tzinfo is None:
                raise _invalid_query(name, "give a time zone, e.g. 2026-11-30T12:00:00Z")
        if since and until and since > until:
            raise _invalid_query("since", "must not be after until")
        found = await WorldStore(store(), keys).history(system, since, until, limit)
        entries = []
        for values in found:
            try:
                entries.append(HistoryEntry.model_validate(values))
            except ValueError:
                continue  # an entry someone wrote by hand into the stream: not ours to show
        return WorldHistory(system=system, entries=entries)


def _invalid_query(name: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("query", name), "msg": message, "type": "value_error"}])
