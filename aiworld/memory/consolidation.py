"""Tiers and pruning: nothing an NPC remembers grows without bound.

- Recent memories (younger than `memory.full_detail_hours`) stay in full.
- Older episodes become one summary per game day (kind `summary`, citing the episodes), once
  their whole day is older than that; the day is then closed (`consolidated_until`), so an old
  activity run again by a reset cannot bring the episodes back.
- Older episodes and summaries whose salience (importance x recency + |valence|) fell below the
  floor are forgotten; reflections, semantic facts and memories of `protected_importance` or more
  stay.
- Past the hard cap, the least salient memories go, protected ones last, down to a tenth below
  the cap (`CAP_HEADROOM`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta

from pydantic import BaseModel

from aiworld.memory.store import MemoryStore
from aiworld.models import Memory

EPISODES = {"observation", "conversation", "action", "rejected", "gossip"}
SUMMARY_ITEMS = 5
# Past the cap, memories are trimmed this far below it: an NPC at its cap then consolidates once
# per a tenth of the cap's new memories, not after every decision (a consolidation reads every
# record: at 500 memories that was most of a decision's cost).
CAP_HEADROOM = 0.1


class Consolidation(BaseModel):
    summarized: int = 0
    summaries: list[str] = []
    pruned: int = 0
    capped: int = 0
    kept: int = 0


def salience(memory: Memory, now: datetime, decay_per_hour: float) -> float:
    hours = max(0.0, (now - memory.created_at).total_seconds() / 3600)
    return memory.importance / 10 * math.pow(decay_per_hour, hours) + abs(memory.valence)


def summarize_day(day: date, episodes: list[Memory]) -> Memory:
    """One memory for a day of episodes: the most important few in the NPC's words, the rest
    counted; what was said is left out (summaries are the NPC's narration, never quoted words)."""
    ranked = sorted(episodes, key=lambda memory: (-memory.importance, memory.created_at, memory.memory_id))
    shown = "; ".join(memory.text.rstrip(":") for memory in ranked[:SUMMARY_ITEMS])
    more = len(ranked) - SUMMARY_ITEMS
    text = f"On {day.isoformat()}: {shown}" + (f"; and {more} more moments" if more > 0 else "")
    participants = sorted({party for memory in episodes for party in memory.participants if party})
    abouts = sorted({memory.about for memory in episodes if memory.about})
    return Memory(
        memory_id=f"summary-{day.isoformat()}",
        kind="summary",
        text=text[:600],
        importance=max(memory.importance for memory in episodes),
        emotion="neutral",
        valence=round(sum(memory.valence for memory in episodes) / len(episodes), 3),
        participants=sorted(set(participants) | set(abouts))[:12],
        evidence=[memory.memory_id for memory in ranked][:60],
        created_at=datetime.combine(day, time(23, 59), tzinfo=UTC),
    )


async def consolidate(store: MemoryStore, npc_id: str, now: datetime) -> Consolidation:
    """Idempotent: summary ids are the day's date, and a summarized day is closed."""
    settings = store.settings
    loaded = await store.load(npc_id, await store.all_ids(npc_id), with_vectors=False)
    memories = [memory for memory, _ in loaded]
    result = Consolidation()
    horizon = now - timedelta(hours=settings.full_detail_hours)
    last_closed_day = horizon.astimezone(UTC).date() - timedelta(days=1)

    def protected(memory: Memory) -> bool:
        return memory.importance >= settings.protected_importance or memory.kind not in EPISODES | {"summary"}

    by_day: dict[date, list[Memory]] = defaultdict(list)
    for memory in memories:
        day = memory.created_at.astimezone(UTC).date()
        if memory.kind in EPISODES and not protected(memory) and day <= last_closed_day:
            by_day[day].append(memory)
    summaries = [summarize_day(day, episodes) for day, episodes in sorted(by_day.items())]
    for summary in summaries:
        await store.write_summary(npc_id, summary)
    summarized = {memory.memory_id for episodes in by_day.values() for memory in episodes}
    if by_day:
        await store.close_days_until(npc_id, datetime.combine(max(by_day) + timedelta(days=1), time(0), tzinfo=UTC))
    result.summarized, result.summaries = len(summarized), [summary.memory_id for summary in summaries]

    remaining = [memory for memory in memories if memory.memory_id not in summarized]
    remaining = [memory for memory in remaining if memory.memory_id not in set(result.summaries)] + summaries
    faded = [
        memory
        for memory in remaining
        if not protected(memory)
        and memory.created_at < horizon  # recent memories stay in full
        and salience(memory, now, settings.recency_decay_per_hour) < settings.salience_floor
    ]
    result.pruned = len(faded)
    faded_ids = {memory.memory_id for memory in faded}
    remaining = [memory for memory in remaining if memory.memory_id not in faded_ids]

    over = len(remaining) - settings.max_memories_per_npc
    dropped: list[Memory] = []
    if over > 0:
        over += int(settings.max_memories_per_npc * CAP_HEADROOM)
        # Unprotected first, then the least salient; the newest of equals stays.
        ranked = sorted(
            remaining,
            key=lambda memory: (
                protected(memory),
                salience(memory, now, settings.recency_decay_per_hour),
                memory.created_at,
            ),
        )
        dropped = ranked[:over]
    result.capped = len(dropped)
    await store.forget(npc_id, sorted(summarized | faded_ids | {memory.memory_id for memory in dropped}))
    result.kept = await store.count(npc_id)
    return result


async def maybe_consolidate(store: MemoryStore, npc_id: str, now: datetime) -> Consolidation | None:
    """Consolidate once per game day, and whenever the NPC holds more than its cap."""
    day = now.astimezone(UTC).date().isoformat()
    held, consolidated_on = await store.count_and_consolidated_on(npc_id)
    if held <= store.settings.max_memories_per_npc and consolidated_on == day:
        return None
    result = await consolidate(store, npc_id, now)
    await store.mark_consolidated_on(npc_id, day)
    return result
