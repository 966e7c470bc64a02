"""What an NPC's life keeps of its recent decisions while its run lives, and carries to the next."""

from __future__ import annotations

import gc
from datetime import UTC, datetime, timedelta

from aiworld.models import Decision, DecisionRecord, DecisionUsage, EmoteAction, SayAction
from workflows.npc_state import RECENT_ACTIONS_TOLD, RECENT_DECISIONS_KEPT, RecentDecisions

START = datetime(2026, 12, 1, 6, tzinfo=UTC)


def decided(sequence: int) -> DecisionRecord:
    return DecisionRecord(
        sequence=sequence,
        decided_at=START + timedelta(minutes=sequence),
        trigger="events",
        event_ids=[f"ev-{sequence}"],
        decision=Decision(
            actions=[SayAction(text=f"Bread number {sequence}!"), EmoteAction(emotion="smile")],
            mood="happy",
            activity=f"baking batch {sequence}",
            reason="the oven is hot",
        ),
        usage=DecisionUsage(provider="offline", latency_ms=1.5, fallbacks=["openai"]),
        queued_action_ids=[f"lina_baker-{sequence}-0"],
        memory_ids=[f"{sequence}-event-0"],
    )


def test_recent_decisions_come_back_as_they_were_kept_and_only_the_newest():
    carried = [decided(sequence) for sequence in range(1, 16)]
    recent = RecentDecisions(carried)
    assert recent.records() == carried and recent.last == carried[-1]
    for sequence in range(16, 31):
        recent.add(decided(sequence))
    assert recent.records() == [decided(sequence) for sequence in range(31 - RECENT_DECISIONS_KEPT, 31)]
    assert recent.last == decided(30)
    told = range(31 - RECENT_ACTIONS_TOLD, 31)
    assert recent.actions() == [f"baking batch {sequence}: the oven is hot" for sequence in told]
    assert RecentDecisions([]).records() == [] and RecentDecisions([]).last is None


def test_kept_decisions_are_nothing_the_garbage_collector_walks():
    """20 records as objects were ~25 tracked objects each; kept, they are two deques and the
    last record."""
    recent = RecentDecisions([])
    gc.collect()
    before = len(gc.get_objects())
    for sequence in range(1, 1 + 5 * RECENT_DECISIONS_KEPT):
        recent.add(decided(sequence))
    last = recent.last
    del last
    gc.collect()
    assert len(gc.get_objects()) - before < 40
