"""Activities of an NPC's inner and social life: reflecting on what it lived, and meeting the
NPCs near it to greet them and pass news on.

Both are safe to run twice: insights are stored under ids derived from the reflection's id, and
what an NPC says to a neighbour is written into the neighbour's memory under an id derived from
the remark (aiworld.memory.meetings).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from temporalio import activity

from activities.npc_activities import DecisionMaker
from aiworld.memory import reflection
from aiworld.memory.meetings import MeetingRequest, MeetingResult, Meetings
from aiworld.memory.store import MemoryStore
from aiworld.models import DecisionUsage, NpcProfile


class ReflectionRequest(BaseModel):
    profile: NpcProfile
    reflection_id: str
    evidence_ids: list[str] = Field(max_length=200)
    now: datetime


class ReflectionResult(BaseModel):
    memory_ids: list[str] = Field(default_factory=list)
    usage: DecisionUsage = Field(default_factory=lambda: DecisionUsage(tier="reflection"))


class MemoryActivities:
    def __init__(self, memory: MemoryStore, brain: DecisionMaker) -> None:
        self._memory = memory
        self._brain = brain
        self._meetings = Meetings(memory)

    @activity.defn
    async def reflect(self, request: ReflectionRequest) -> ReflectionResult:
        npc_id = request.profile.npc_id
        # Some evidence may have been consolidated away meanwhile: reflect on what is left.
        loaded = await self._memory.load(npc_id, request.evidence_ids[-reflection.EVIDENCE_SHOWN :], with_vectors=False)
        evidence = [memory for memory, _ in loaded]
        if not evidence:
            return ReflectionResult()
        insights, usage = await self._brain.reflect(request.profile, evidence)
        memories = reflection.as_memories(request.reflection_id, insights, request.now)
        await self._memory.remember_all(npc_id, memories)
        return ReflectionResult(memory_ids=[memory.memory_id for memory in memories], usage=usage)

    @activity.defn
    async def meet_neighbours(self, request: MeetingRequest) -> MeetingResult:
        """Local activity: greet the NPCs near and tell them news, which spreads on from them.
        Runs that began with the `cheaper-decisions` patch meet in the save instead
        (NpcActivities.save_outcome); older ones still call this."""
        return await self._meetings.meet(request)

    def all(self) -> list:
        return [self.reflect, self.meet_neighbours]
