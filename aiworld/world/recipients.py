"""Who hears a piece of news: a scope resolved against the NPC directory, page by page.

The directory (a hash per map, a set per faction, one hash of everyone) answers a map of 1,000
NPCs in about a millisecond; the search attributes `NpcMap` and `NpcFaction` would answer the same
through Temporal's visibility store, which lags behind the workflows and costs the server a list
query per page (figures in the README). Pages follow the NPC ids' order, so a page is exactly
`count` long and a fan-out resumed from "after this id" neither skips nor repeats anyone.
"""

from __future__ import annotations

import re

from pydantic import BaseModel

from aiworld.models import NPC_ID_PATTERN
from aiworld.world.directory import NpcDirectory
from aiworld.world.news import Scope, ScopeKind


class RecipientPage(BaseModel):
    npc_ids: list[str]
    # The page after this one starts after this id; None when this was the last.
    next_after: str | None = None


_NPC_ID = re.compile(NPC_ID_PATTERN)


async def recipients_page(directory: NpcDirectory, scope: Scope, after: str, count: int) -> RecipientPage:
    """The first `count` recipients (by id) after `after` ("" starts). A damaged entry that is no
    NPC id is left out: no event could be addressed to it, and it must not stall the fan-out."""
    everyone = [npc_id for npc_id in await _recipients(directory, scope) if _NPC_ID.fullmatch(npc_id)]
    page = [npc_id for npc_id in everyone if npc_id > after][: count + 1]
    if len(page) > count:
        return RecipientPage(npc_ids=page[:count], next_after=page[count - 1])
    return RecipientPage(npc_ids=page)


async def count_recipients(directory: NpcDirectory, scope: Scope) -> int:
    """How many NPCs the scope reaches now (the API's answer; the fan-out reads the directory again)."""
    match scope.kind:
        case ScopeKind.MAP:
            assert scope.map is not None  # Scope validates the fields of each kind
            return await directory.count_on_map(scope.map)
        case ScopeKind.FACTION:
            assert scope.faction is not None
            return await directory.count_in_faction(scope.faction)
        case ScopeKind.WORLD:
            return await directory.count_everyone()
    return len(await _recipients(directory, scope))


async def _recipients(directory: NpcDirectory, scope: Scope) -> list[str]:
    """Every recipient, sorted."""
    match scope.kind:
        case ScopeKind.NPC:
            assert scope.npc_id is not None
            return [scope.npc_id]
        case ScopeKind.NEAR:
            assert scope.map is not None and scope.x is not None and scope.y is not None and scope.radius is not None
            return await directory.near(scope.map, scope.x, scope.y, scope.radius)
        case ScopeKind.MAP:
            assert scope.map is not None
            return sorted(await directory.on_map(scope.map))
        case ScopeKind.FACTION:
            assert scope.faction is not None
            return await directory.in_faction(scope.faction)
        case ScopeKind.WORLD:
            return sorted(await directory.everyone())
