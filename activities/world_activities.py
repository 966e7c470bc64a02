"""Activities of the world cycles: read a system's inputs, word its changes, write its outcome once,
and carry out the follow-ups (game actions, relationship changes).

Each is safe to run twice: the write is guarded by the cycle id, actions are queued by their fixed
ids, relationship changes are applied once per change id.
"""

from __future__ import annotations

from pydantic import BaseModel
from redis.exceptions import RedisError, ResponseError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from aiworld.memory.store import MemoryStore
from aiworld.models import NpcProfile
from aiworld.store.action_queue import ActionQueue
from aiworld.world.cycle import CycleOutcome, CycleRead, WorldChange
from aiworld.world.store import CursorMoved, WorldStore
from aiworld.world.words import WorldNarrator, words_for

# What each system reads of the others' state.
OTHER_STATE = {"quests": ("economy", "politics")}


class ReadRequest(BaseModel):
    system: str
    cycle_id: str
    inbox_batch: int = 500
    weather_maps: list[str] = []


class WordsRequest(BaseModel):
    system: str
    changes: list[WorldChange]


class WordedChanges(BaseModel):
    changes: list[WorldChange]
    words_by: str


class ApplyRequest(BaseModel):
    outcome: CycleOutcome
    expected_cursor: str
    history_cap: int


class WorldStateDamaged(ApplicationError):
    """A key of the world holds something the cycle cannot write over (wrong type): an operator's
    fix is needed, retrying cannot help. Nothing of the cycle was written."""

    def __init__(self, why: str) -> None:
        super().__init__(why, type="WorldStateDamaged", non_retryable=True)


def _the_ones_needed(system: str, npcs: list[NpcProfile]) -> list[NpcProfile]:
    """Only the NPCs a cycle can act through, so a world of thousands stays a small input:
    merchants (prices, fetch quests), and the most important NPC of each map and faction
    (announcements, migrations, hunt quests)."""
    if system == "politics":
        return []
    keep: dict[str, NpcProfile] = {npc.npc_id: npc for npc in npcs if npc.shop} if system != "environment" else {}
    ranked = sorted(npcs, key=lambda npc: (-npc.importance, npc.npc_id))
    seen: set[str] = set()
    for npc in ranked:
        for group in (f"map:{npc.map}", f"faction:{npc.faction}"):
            if group not in seen:
                seen.add(group)
                keep[npc.npc_id] = npc
    return sorted(keep.values(), key=lambda npc: npc.npc_id)


class WorldActivities:
    def __init__(self, world: WorldStore, memory: MemoryStore, actions: ActionQueue, narrator: WorldNarrator) -> None:
        self._world = world
        self._memory = memory
        self._actions = actions
        self._narrator = narrator

    @activity.defn
    async def read_world_cycle(self, request: ReadRequest) -> CycleRead:
        system = request.system
        applied = await self._world.applied(system, request.cycle_id)
        if applied is not None:
            return CycleRead(cycle_id=request.cycle_id, applied=applied)
        state = await self._world.state(system)
        cursor = state.get("inbox_cursor", "")
        inbox, next_cursor, refused = await self._world.inbox(system, cursor, request.inbox_batch)
        read = CycleRead(
            cycle_id=request.cycle_id,
            state=state,
            cursor=cursor,
            next_cursor=next_cursor,
            inbox=inbox,
            refused_entries=refused,
        )
        if system == "quests":
            read.quests = await self._world.open_quests()
        if system != "politics":
            everyone = await self._world.npcs()
            givers = {values.get("giver") for values in read.quests.values()}
            read.npcs = sorted(
                {
                    npc.npc_id: npc
                    for npc in [*_the_ones_needed(system, everyone), *(n for n in everyone if n.npc_id in givers)]
                }.values(),
                key=lambda npc: npc.npc_id,
            )
        for other in OTHER_STATE.get(system, ()):
            read.other_state[other] = await self._world.state(other)
        if system == "politics":
            named = {entry.faction for entry in inbox if entry.faction}
            named.update(
                str(value)
                for entry in inbox
                for key, value in (entry.event.facts or {}).items()
                if key in ("faction", "faction_a", "faction_b", "attacker_faction", "owner")
            )
            read.other_state = await self._world.factions(named)
        if system == "environment":
            read.maps = sorted(set(await self._world.directory.maps()) | set(request.weather_maps))
        return read

    @activity.defn
    async def word_world_changes(self, request: WordsRequest) -> WordedChanges:
        """The LLM tier `world` phrases the changes; the offline writer fills whatever it did not."""
        words, usage = await self._narrator.narrate(request.system, request.changes)
        return WordedChanges(changes=words_for(request.changes, words), words_by=usage.provider)

    @activity.defn
    async def apply_world_cycle(self, request: ApplyRequest) -> bool:
        try:
            return await self._world.apply(request.outcome, request.expected_cursor, request.history_cap)
        except CursorMoved as moved:
            raise ApplicationError(str(moved), type="CursorMoved", non_retryable=True) from None
        except ResponseError as error:
            if "WRONGTYPE" in str(error):
                raise WorldStateDamaged(str(error)) from None
            raise

    @activity.defn
    async def carry_out_world_cycle(self, outcome: CycleOutcome) -> int:
        """Queue the cycle's game actions and write its relationship changes, each once.
        Returns how many actions this call queued (0 on a re-run)."""
        try:
            queued = sum(await self._actions.enqueue_all(outcome.actions))
            for move in outcome.relationships:
                await self._memory.adjust_relationship(move.npc_id, move.party, move.delta, move.change_id, move.reason)
        except (RedisError, OSError) as error:
            raise ApplicationError(
                f"state store unavailable: {type(error).__name__}", type="StoreUnavailable"
            ) from None
        return queued

    def all(self) -> list:
        return [self.read_world_cycle, self.word_world_changes, self.apply_world_cycle, self.carry_out_world_cycle]
