"""NPCs who meet: neighbours greet each other and pass news on, each retelling vaguer than the
last, up to a hop limit; what they say moves how they like each other.

What is said is an `npc_spoke` game event with an id derived from speaker, listener and the news
(or the meeting), written straight into the listener's memory and liking under that id, so a
retried activity or a reset writes it once. A listener given news it may retell passes it on to
its own neighbours at once, in the same meeting, up to the hop limit: nobody's workflow is woken.
On the 1,000-NPC benchmark a workflow task per remark made the neighbours' chatter 85% of all
signals, and with an LLM every remark would have been a model call too. Two TTL keys bound the
chatter: a pair greets at most once per `meeting_interval_seconds`, and a piece of news is told to
an NPC once.
"""

from __future__ import annotations

import math
import re
from datetime import datetime

import redis.asyncio as redis
from pydantic import BaseModel

from aiworld.config import MemorySettings
from aiworld.models import MAX_PLAYER_TEXT_CHARS, GameEvent, GameEventKind, Memory, NpcProfile
from aiworld.store.keys import Keys
from aiworld.store.scripts import run_script_batch
from aiworld.world.directory import NpcDirectory

# A key taken for an event id, or already held by it (an earlier run of the same call): one round
# trip where SET NX and then GET took two whenever the key was held.
_CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
"""

# How much of a story survives each retelling (by words), and never fewer words than this.
DETAIL_KEPT_PER_RETELLING = 0.7
FEWEST_WORDS = 4
_OPENERS = ["", "I heard that", "Word is that", "Someone said that", "They say that"]
_NUMBER = re.compile(r"\b(\d+|one|two|three|four|five|six|seven|eight|nine|ten|dozens?|hundreds?)\b", re.I)
_POSITIVE = re.compile(r"\b(gave|helped|saved|won|kind|generous|thanks|friend|feast|gift|rescued|peace)\w*", re.I)
_NEGATIVE = re.compile(r"\b(attack|stole|thief|killed|burn|raid|betray|cheat|lie|liar|war|threat|coward)\w*", re.I)
# News the speaker still tells: fresher than this many of its newest memories.
NEWS_LOOKBACK = 30
NEIGHBOURS_FRESH_FOR = 2.0


def retell(text: str, retellings: int) -> str:
    """The story as the `retellings`-th teller says it: shorter, numbers gone vague, hearsay."""
    if retellings <= 0:
        return text
    words = text.split()
    kept = max(FEWEST_WORDS, math.ceil(len(words) * DETAIL_KEPT_PER_RETELLING**retellings))
    story = " ".join(words[:kept]).rstrip(",;:.!?")
    if retellings >= 2:
        story = _NUMBER.sub("some", story)
    opener = _OPENERS[min(retellings, len(_OPENERS) - 1)]
    return f"{opener} {story}.".strip()[:MAX_PLAYER_TEXT_CHARS]


def tone(text: str) -> int:
    """-1 (bad news, hostile words), 0, or 1 (good news, kind words)."""
    good, bad = len(_POSITIVE.findall(text)), len(_NEGATIVE.findall(text))
    return (good > bad) - (bad > good)


def liking_change(text: str, listener: NpcProfile) -> int:
    """How the listener's regard for the speaker moves with what was said: a chat warms a little,
    kind words more; ill words about the listener's own faction cool it, the more so the more
    loyal the listener is."""
    feeling = tone(text)
    if feeling < 0 and listener.faction != "none" and listener.faction.replace("_", " ") in text.lower():
        return -max(1, round(4 * listener.faction_loyalty / 100))
    return {1: 3, 0: 1, -1: 0}[feeling]


def news_memory_facts(event: GameEvent) -> tuple[str | None, int]:
    """The news an event carries: its news id and retellings so far (a world event is the source)."""
    facts = event.facts or {}
    if event.kind is GameEventKind.WORLD_EVENT:
        return str(facts.get("news_id") or event.event_id), 0
    if event.kind is GameEventKind.NPC_SPOKE and "news_id" in facts:
        retellings = facts.get("retellings", 1)
        return str(facts["news_id"]), int(retellings) if isinstance(retellings, int | float) else 1
    return None, 0


class Remark(BaseModel):
    """One line an NPC says to a neighbour, as an `npc_spoke` event."""

    listener: str
    event: GameEvent


class MeetingPlan(BaseModel):
    remarks: list[Remark] = []
    neighbours: list[str] = []


class Gossip:
    def __init__(self, client: redis.Redis, keys: Keys, settings: MemorySettings) -> None:
        self._redis = client
        self._keys = keys
        self._settings = settings
        # Who stands near is read again at most every NEIGHBOURS_FRESH_FOR seconds: each meeting
        # and each retelling looks for neighbours, and reading a map's whole list each time was
        # about 5% of a 1,000-NPC worker's CPU. An NPC placed meanwhile is met a little later.
        self._directory = NpcDirectory(client, keys, positions_fresh_for=NEIGHBOURS_FRESH_FOR)
        self._claim_once = client.register_script(_CLAIM)

    async def plan(self, speaker: NpcProfile, sequence: int, now: datetime, news: list[Memory]) -> MeetingPlan:
        """Who the speaker talks to now and what it says. Safe to run twice: the TTL keys hold the
        same event id, so a second run plans the same remarks (written under the same memory ids)."""
        neighbours = await self._neighbours(speaker)
        await self.learned(speaker.npc_id, news)  # who tells news knows it: nobody tells it back later
        told = await self._news_for_each(speaker, neighbours, now, news)
        greeted = await self._greetings_for(speaker, [n for n in neighbours if n not in told], sequence, now)
        remarks = [
            Remark(listener=listener, event=event)
            for listener in neighbours
            if (event := told.get(listener) or greeted.get(listener)) is not None
        ]
        return MeetingPlan(remarks=remarks, neighbours=neighbours)

    async def pass_on(self, teller: NpcProfile, now: datetime, heard: Memory) -> list[Remark]:
        """What a listener who was just told `heard` tells its own neighbours of it (news only, and
        none past the hop limit). Safe to run twice, as `plan` is."""
        neighbours = await self._neighbours(teller)
        told = await self._news_for_each(teller, neighbours, now, [heard])
        return [Remark(listener=listener, event=told[listener]) for listener in neighbours if listener in told]

    async def _neighbours(self, speaker: NpcProfile) -> list[str]:
        return [
            npc_id
            for npc_id in await self._directory.near(speaker.map, speaker.x, speaker.y, self._settings.meeting_radius)
            if npc_id != speaker.npc_id
        ][: self._settings.meetings_per_decision]

    async def learned(self, npc_id: str, memories: list[Memory]) -> None:
        """Who holds a piece of news (from the world, heard, or told on) is never told it again:
        a world event broadcast to a whole map is not retold among those who all heard it."""
        news_ids = {memory.news_id for memory in memories if memory.news_id is not None}
        if not news_ids:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for news_id in sorted(news_ids):
                pipe.set(
                    self._keys.news_told(news_id, npc_id),
                    f"known-{npc_id}",
                    nx=True,
                    ex=self._settings.idempotency_ttl_seconds,
                )
            await pipe.execute()

    async def _claims(self, claims: list[tuple[str, str, int]]) -> list[bool]:
        """For each (key, event id, ttl): True when the event id owns the key (now, or from an
        earlier run of the same call). All in one round trip: the keys are each a listener's own."""
        owned = await run_script_batch(
            self._redis, self._claim_once, [([key], [event_id, ttl]) for key, event_id, ttl in claims]
        )
        return [bool(one) for one in owned]

    async def _news_for_each(
        self, speaker: NpcProfile, listeners: list[str], now: datetime, news: list[Memory]
    ) -> dict[str, GameEvent]:
        """The news each listener is told: the first piece (freshest first) not told to it yet. One
        round trip per piece of news, for every listener still without news at once."""
        told: dict[str, GameEvent] = {}
        for memory in news:
            if memory.news_id is None or memory.retellings >= self._settings.gossip_hops:
                continue
            news_id = memory.news_id
            # Not back to the one who told it.
            waiting = [listener for listener in listeners if listener not in told and memory.about != f"npc:{listener}"]
            event_ids = [f"news-{speaker.npc_id}-{listener}-{news_id}"[:80] for listener in waiting]
            owned = await self._claims(
                [
                    (self._keys.news_told(news_id, listener), event_id, self._settings.idempotency_ttl_seconds)
                    for listener, event_id in zip(waiting, event_ids, strict=True)
                ]
            )
            story = memory.words if memory.kind == "gossip" and memory.words else memory.text.removeprefix("News: ")
            for listener, event_id, mine in zip(waiting, event_ids, owned, strict=True):
                if mine:
                    told[listener] = GameEvent(
                        event_id=event_id,
                        kind=GameEventKind.NPC_SPOKE,
                        occurred_at=now,
                        other_npc_id=speaker.npc_id,
                        text=retell(story, memory.retellings + 1),
                        importance=max(1, memory.importance - 1),
                        facts={"news_id": news_id, "retellings": memory.retellings + 1},
                    )
        return told

    async def _greetings_for(
        self, speaker: NpcProfile, listeners: list[str], sequence: int, now: datetime
    ) -> dict[str, GameEvent]:
        """A greeting for each listener the speaker has not greeted within the meeting interval."""
        event_ids = [f"greet-{speaker.npc_id}-{listener}-{sequence}"[:80] for listener in listeners]
        owned = await self._claims(
            [
                (self._keys.meeting(speaker.npc_id, listener), event_id, self._settings.meeting_interval_seconds)
                for listener, event_id in zip(listeners, event_ids, strict=True)
            ]
        )
        return {
            listener: GameEvent(
                event_id=event_id,
                kind=GameEventKind.NPC_SPOKE,
                occurred_at=now,
                other_npc_id=speaker.npc_id,
                text=f"Good day! {speaker.name} here.",
                importance=1,
            )
            for listener, event_id, mine in zip(listeners, event_ids, owned, strict=True)
            if mine
        }

    @staticmethod
    def news_worth_telling(memories: list[Memory]) -> list[Memory]:
        """News memories, freshest and most important first."""
        found = [memory for memory in memories if memory.news_id is not None]
        return sorted(found, key=lambda memory: (-memory.created_at.timestamp(), -memory.importance))
