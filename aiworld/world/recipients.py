"""Who hears a piece of news: a scope resolved against the NPC directory, page by page.

The directory (a hash per map, a set per faction, one hash of everyone) answers a map of 1,000
NPCs in about a millisecond and pages with SCAN cursors; the search attributes `NpcMap` and
`NpcFaction` would answer the same through Temporal's visibility store, which lags behind the
workflows and costs the server a list query per page (figures in the README).
"""

from __future__ import annotations

import math

from pydantic import BaseModel

from aiworld.world.directory import NpcDirectory
from aiworld.world.news import Scope, ScopeKind


class RecipientPage(BaseModel):
    npc_ids: list[str]
    # Where the next page starts; 0 when this was the last.
    cursor: int = 0


async def recipients_page(directory: NpcDirectory, scope: Scope, cursor: int, count: int) -> RecipientPage:
    """One page of the scope's recipients, from `cursor` (0 starts). Small scopes come in one page."""
    match scope.kind:
        case ScopeKind.NPC:
            assert scope.npc_id is not None  # Scope validates the fields of each kind
            return RecipientPage(npc_ids=[scope.npc_id])
        case ScopeKind.NEAR:
            assert scope.map is not None and scope.x is not None and scope.y is not None and scope.radius is not None
            x, y, radius = scope.x, scope.y, scope.radius
            cursor, positions = await directory.scan_map(scope.map, cursor, count)
            near = sorted(npc for npc, (nx, ny) in positions.items() if math.hypot(nx - x, ny - y) <= radius)
            return RecipientPage(npc_ids=near, cursor=cursor)
        case ScopeKind.MAP:
            assert scope.map is not None
            cursor, positions = await directory.scan_map(scope.map, cursor, count)
            return RecipientPage(npc_ids=sorted(positions), cursor=cursor)
        case ScopeKind.FACTION:
            assert scope.faction is not None
            cursor, members = await directory.scan_faction(scope.faction, cursor, count)
            return RecipientPage(npc_ids=members, cursor=cursor)
        case ScopeKind.WORLD:
            cursor, everyone = await directory.scan_everyone(cursor, count)
            return RecipientPage(npc_ids=everyone, cursor=cursor)


async def count_recipients(directory: NpcDirectory, scope: Scope) -> int:
    """How many NPCs the scope reaches now (the API's answer; the fan-out reads the directory again)."""
    match scope.kind:
        case ScopeKind.NPC:
            return 1
        case ScopeKind.NEAR:
            assert scope.map is not None and scope.x is not None and scope.y is not None and scope.radius is not None
            return len(await directory.near(scope.map, scope.x, scope.y, scope.radius))
        case ScopeKind.MAP:
            assert scope.map is not None
            return await directory.count_on_map(scope.map)
        case ScopeKind.FACTION:
            assert scope.faction is not None
            return await directory.count_in_faction(scope.faction)
        case ScopeKind.WORLD:
            return await directory.count_everyone()
