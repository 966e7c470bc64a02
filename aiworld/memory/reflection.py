"""Reflection, as in Generative Agents: when the importance of what an NPC lived since its last
reflection passes a threshold, a few insights are drawn from those memories and kept as memories
of kind `reflection` that cite their evidence. The LLM tier `reflection` writes them; offline (or
when every provider fails or answers nonsense) a deterministic summarizer does.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from aiworld.models import Memory, NpcProfile

# Generative Agents reflected at a summed importance of 150 (of 1..10 each): about two or three
# times a game day for an NPC with a busy life.
REFLECTION_IMPORTANCE_THRESHOLD = 150
MOST_INSIGHTS = 3
EVIDENCE_SHOWN = 30


class Insight(BaseModel):
    text: str = Field(min_length=1, max_length=300)
    importance: int = Field(default=6, ge=1, le=10)
    # Ids of the memories the insight rests on; at least one.
    evidence: list[Annotated[str, Field(max_length=80)]] = Field(min_length=1, max_length=20)


class ReflectionDraft(BaseModel):
    """What the reflection tier answers: a few insights about the memories it was shown."""

    insights: list[Insight] = Field(min_length=1, max_length=5)


def grounded(draft: ReflectionDraft, evidence: list[Memory]) -> list[Insight]:
    """The insights whose evidence names memories that were shown (others cite nothing real)."""
    shown = {memory.memory_id for memory in evidence}
    kept = []
    for insight in draft.insights[:MOST_INSIGHTS]:
        cited = [memory_id for memory_id in insight.evidence if memory_id in shown]
        if cited:
            kept.append(insight.model_copy(update={"evidence": cited}))
    return kept


def summarize(profile: NpcProfile, evidence: list[Memory]) -> list[Insight]:
    """The offline reflection: who the NPC dealt with most and how it went, and what mattered most."""
    insights = []
    parties = Counter(memory.about for memory in evidence if memory.about)
    if parties:
        party, count = parties.most_common(1)[0]
        about = [memory for memory in evidence if memory.about == party]
        feeling = sum(memory.valence for memory in about) / len(about)
        mood = "warmly" if feeling > 0.15 else "uneasily" if feeling < -0.15 else "often"
        insights.append(
            Insight(
                text=f"I have dealt with {party} {count} times lately, {mood}.",
                importance=min(10, 4 + count // 3),
                evidence=[memory.memory_id for memory in about][:20],
            )
        )
    weightiest = max(evidence, key=lambda memory: (memory.importance, memory.created_at))
    insights.append(
        Insight(
            text=f"What matters most of late: {weightiest.text.rstrip(':')}",
            importance=max(5, weightiest.importance),
            evidence=[weightiest.memory_id],
        )
    )
    news = [memory for memory in evidence if memory.news_id]
    if news:
        insights.append(
            Insight(
                text=f"There is talk in {profile.map}: {len(news)} pieces of news reached me.",
                importance=5,
                evidence=[memory.memory_id for memory in news][:20],
            )
        )
    return insights[:MOST_INSIGHTS]


def as_memories(reflection_id: str, insights: list[Insight], now: datetime) -> list[Memory]:
    """Insights as memories with ids derived from the reflection's id (idempotent)."""
    return [
        Memory(
            memory_id=f"{reflection_id}-{index}",
            kind="reflection",
            text=insight.text[:600],
            importance=insight.importance,
            emotion="think",
            evidence=insight.evidence,
            created_at=now,
        )
        for index, insight in enumerate(insights)
    ]
