"""An NPC meeting the NPCs near it: it greets them and tells them news, which spreads on from
them (aiworld.memory.gossip plans what is said; this writes it where each listener remembers it).

Safe to run twice: what an NPC says to a neighbour is written into the neighbour's memory under an
id derived from the remark, and its liking under a change id derived from it too.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from aiworld.memory.gossip import NEWS_LOOKBACK, Gossip, Remark
from aiworld.memory.relationships import RelationshipMove
from aiworld.memory.store import MemoryStore
from aiworld.models import Memory, NpcProfile
from aiworld.npc import experience


class MeetingRequest(BaseModel):
    profile: NpcProfile
    sequence: int
    now: datetime


class MeetingResult(BaseModel):
    neighbours: list[str] = Field(default_factory=list)
    # Ids of the remarks written (greetings and news, passed on ones too); a neighbour whose life
    # published no profile hears nothing.
    said: list[str] = Field(default_factory=list)


class Meetings:
    def __init__(self, memory: MemoryStore) -> None:
        self._memory = memory
        self._gossip = Gossip(memory.redis, memory.keys, memory.settings)

    async def meet(self, request: MeetingRequest) -> MeetingResult:
        """Greet the NPCs near and tell them the news the NPC heard lately."""
        profile = request.profile
        recent = await self._memory.load(
            profile.npc_id, await self._memory.newest_ids(profile.npc_id, NEWS_LOOKBACK), with_vectors=False
        )
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
            heard: list[tuple[NpcProfile, Memory]] = []
            moves = []
            for remark in remarks:
                listener = profiles.get(remark.listener)
                if listener is None:
                    continue
                event = remark.event
                when = event.occurred_at or now
                heard.append((listener, experience.memory_of_event(event, listener, f"heard-{event.event_id}", when)))
                if change := experience.relationship_change_of(event, listener):
                    moves.append(
                        RelationshipMove(
                            listener.npc_id, change.party, change.delta, change.change_id, change.reason, when
                        )
                    )
                said.append(event.event_id)
            # Each round's memories and likings in one round trip each, not one per listener.
            await self._memory.remember_each([(listener.npc_id, memory) for listener, memory in heard])
            await self._memory.adjust_relationships(moves)
            passed_on = []
            for listener, memory in heard:
                if memory.news_id is not None:
                    passed_on += await self._gossip.pass_on(listener, now, memory)
            remarks = passed_on
        return said
