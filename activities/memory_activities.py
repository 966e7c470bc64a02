"""Activities of an NPC's inner and social life: reflecting on what it lived, and meeting the
NPCs near it to greet them and pass news on.

Both are safe to run twice: insights are stored under ids derived from the reflection's id, and
what an NPC says to a neighbour is written into the neighbour's memory under an id derived from
the remark (aiworld.memory.gossip).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from temporalio import activity

from activities.npc_activities import DecisionMaker
from aiworld.memory import reflection
from aiworld.memory.gossip import NEWS_LOOKBACK, Gossip, Remark
from aiworld.memory.store import MemoryStore
from aiworld.models import DecisionUsage, NpcProfile
from aiworld.npc import experience


class ReflectionRequest(BaseModel):
    profile: NpcProfile
    reflection_id: str
    evidence_ids: list[str] = Field(max_length=200)
    now: datetime


class ReflectionResult(BaseModel):
    memory_ids: list[str] = Field(default_factory=list)
    usage: DecisionUsage = Field(default_factory=lambda: DecisionUsage(tier="reflection"))


class MeetingRequest(BaseModel):
    profile: NpcProfile
    sequence: int
    now: datetime


class MeetingResult(BaseModel):
    neighbours: list[str] = Field(default_factory=list)
    # Ids of the remarks written (greetings and news, passed on ones too); a neighbour whose life
    # published no profile hears nothing.
    said: list[str] = Field(default_factory=list)


class MemoryActivities:
    def __init__(self, memory: MemoryStore, brain: DecisionMaker) -> None:
        self._memory = memory
        self._brain = brain
        self._gossip = Gossip(memory.redis, memory.keys, memory.settings)

    @activity.defn
    async def reflect(self, request: ReflectionRequest) -> ReflectionResult:
        npc_id = request.profile.npc_id
        # Some evidence may have been consolidated away meanwhile: reflect on what is left.
        loaded = await self._memory.load(npc_id, request.evidence_ids[-reflection.EVIDENCE_SHOWN :])
        evidence = [memory for memory, _ in loaded]
        if not evidence:
            return ReflectionResult()
        insights, usage = await self._brain.reflect(request.profile, evidence)
        memories = reflection.as_memories(request.reflection_id, insights, request.now)
        await self._memory.remember_all(npc_id, memories)
        return ReflectionResult(memory_ids=[memory.memory_id for memory in memories], usage=usage)

    @activity.defn
    async def meet_neighbours(self, request: MeetingRequest) -> MeetingResult:
        """Local activity: greet the NPCs near and tell them news, which spreads on from them."""
        profile = request.profile
        recent = await self._memory.load(profile.npc_id, await self._memory.newest_ids(profile.npc_id, NEWS_LOOKBACK))
        news = Gossip.news_worth_telling([memory for memory, _ in recent])
        plan = await self._gossip.plan(profile, request.sequence, request.now, news)
        return MeetingResult(neighbours=plan.neighbours, said=await self._tell(plan.remarks, request.now))

    async def _tell(self, remarks: list[Remark], now: datetime) -> list[str]:
        """Breadth first: each remark goes into its listener's memory and liking, worded as the
        listener's own life words it, under an id derived from the remark (a retried meeting writes
        nothing twice); a listener given news passes it on to its neighbours at once. A listener
        whose life published no profile hears nothing. Returns the ids of the remarks written."""
        said = []
        while remarks:
            profiles = await self._memory.published_profiles(sorted({remark.listener for remark in remarks}))
            passed_on = []
            for remark in remarks:
                listener = profiles.get(remark.listener)
                if listener is None:
                    continue
                event = remark.event
                when = event.occurred_at or now
                memory = experience.memory_of_event(event, listener, f"heard-{event.event_id}", when)
                await self._memory.remember_all(listener.npc_id, [memory])
                if change := experience.relationship_change_of(event, listener):
                    await self._memory.adjust_relationship(
                        listener.npc_id, change.party, change.delta, change.change_id, change.reason, when
                    )
                said.append(event.event_id)
                if memory.news_id is not None:
                    passed_on += await self._gossip.pass_on(listener, now, memory)
            remarks = passed_on
        return said

    def all(self) -> list:
        return [self.reflect, self.meet_neighbours]
