"""Activities of an NPC's life: load what it knows, decide, remember, and queue actions.

Each is safe to run twice (a retry or a `temporal workflow reset` runs it again): memories and
relationship changes are keyed by the decision sequence, actions by their deterministic ids.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, Field
from redis.exceptions import RedisError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from aiworld.action_queue import ActionQueue
from aiworld.memory import MemoryStore
from aiworld.models import (
    DecisionResult,
    DecisionUsage,
    DialogueContext,
    DialogueDraft,
    GameEvent,
    Memory,
    NpcContext,
    NpcProfile,
    PlayerRef,
    QueuedAction,
    TalkTurn,
)


class DecisionMaker(Protocol):
    """The LLM router (aiworld.llm) or anything with the same two calls."""

    async def decide(self, context: NpcContext) -> DecisionResult: ...

    async def converse(self, context: DialogueContext) -> tuple[DialogueDraft, DecisionUsage]: ...


class ContextRequest(BaseModel):
    profile: NpcProfile
    now: datetime
    sequence: int
    mood: str
    activity: str
    events: list[GameEvent] = Field(default_factory=list)
    players_near: list[PlayerRef] = Field(default_factory=list)
    recent_actions: list[str] = Field(default_factory=list)
    # The party the NPC is dealing with ("player:150001"): its memories rank first.
    about: str | None = None
    turn: TalkTurn | None = None
    # How long the store may take; past it (or when it fails) the context comes without memories.
    budget_seconds: float = Field(default=4.0, gt=0, le=60)


class ReplyResult(BaseModel):
    draft: DialogueDraft
    usage: DecisionUsage


class RelationshipChange(BaseModel):
    party: str
    delta: int = Field(ge=-100, le=100)
    change_id: str
    reason: str


class RecordRequest(BaseModel):
    profile: NpcProfile
    memories: list[Memory] = Field(default_factory=list)
    relationship_changes: list[RelationshipChange] = Field(default_factory=list)
    npc_fields: dict[str, str] = Field(default_factory=dict)


class NpcActivities:
    def __init__(self, memory: MemoryStore, actions: ActionQueue, brain: DecisionMaker) -> None:
        self._memory = memory
        self._actions = actions
        self._brain = brain

    @activity.defn
    async def load_npc_context(self, request: ContextRequest) -> NpcContext:
        """A fast idempotent read of the state store; run as a local activity."""
        return NpcContext(**await self._context_fields(request))

    @activity.defn
    async def load_dialogue_context(self, request: ContextRequest) -> DialogueContext:
        """The same read, for a player's line: their memories rank first."""
        if request.turn is None:
            raise ApplicationError("a dialogue context needs the player's turn", non_retryable=True)
        return DialogueContext(**await self._context_fields(request), turn=request.turn)

    async def _context_fields(self, request: ContextRequest) -> dict:
        """The request's facts plus what the store knows. A store that fails or is slow costs the
        NPC its memories for this one decision, not the decision: the context says it is
        `degraded` instead of the activity failing (and it stays within its own time budget)."""
        npc_id = request.profile.npc_id
        parties = {f"player:{player.char_id}" for player in request.players_near}
        parties.update(f"player:{event.player.char_id}" for event in request.events if event.player)
        parties.update(f"npc:{event.other_npc_id}" for event in request.events if event.other_npc_id)
        if request.about:
            parties.add(request.about)
        fields = request.model_dump(exclude={"about", "turn", "budget_seconds"})
        try:
            async with asyncio.timeout(request.budget_seconds):
                fields.update(
                    memories=await self._memory.recall(npc_id, now=request.now, about=request.about),
                    relationships=await self._memory.relationships(npc_id, sorted(parties)),
                    world=await self._memory.world_state(),
                )
        except (RedisError, OSError, TimeoutError) as error:
            activity.logger.warning("state store unavailable, context without memories: %r", error)
            fields["degraded"] = f"state store unavailable: {type(error).__name__}"
        return fields

    @activity.defn
    async def decide_next_action(self, context: NpcContext) -> DecisionResult:
        return await self._brain.decide(context)

    @activity.defn
    async def compose_reply(self, context: DialogueContext) -> ReplyResult:
        draft, usage = await self._brain.converse(context)
        return ReplyResult(draft=draft, usage=usage)

    @activity.defn
    async def record_outcome(self, request: RecordRequest) -> dict[str, int]:
        """Store memories and relationship changes once; returns the parties' scores now."""
        npc_id = request.profile.npc_id
        for memory in request.memories:
            await self._memory.remember(npc_id, memory)
        scores = {}
        for change in request.relationship_changes:
            scores[change.party] = await self._memory.adjust_relationship(
                npc_id, change.party, change.delta, change.change_id, change.reason
            )
        if request.npc_fields:
            await self._memory.publish_npc(request.profile, request.npc_fields)
        return scores

    @activity.defn
    async def enqueue_actions(self, actions: list[QueuedAction]) -> list[str]:
        """Queue each action once; returns the ids this call added (others were already there)."""
        return [action.action_id for action in actions if await self._actions.enqueue(action)]

    def all(self) -> list:
        return [
            self.load_npc_context, self.load_dialogue_context, self.decide_next_action, self.compose_reply,
            self.record_outcome, self.enqueue_actions,
        ]  # fmt: skip
