"""The NPC search attributes (DESIGN.md §4, contract): registered on the dev server, upserted by
the workflow when they change, queried by `aiworld npc list` and the operator's `temporal` CLI."""

from temporalio.common import SearchAttributeKey

NPC_MAP = SearchAttributeKey.for_keyword("NpcMap")
NPC_FACTION = SearchAttributeKey.for_keyword("NpcFaction")
NPC_MOOD = SearchAttributeKey.for_keyword("NpcMood")
NPC_ACTIVITY = SearchAttributeKey.for_keyword("NpcActivity")

ALL = (NPC_MAP, NPC_FACTION, NPC_MOOD, NPC_ACTIVITY)
