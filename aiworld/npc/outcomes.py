"""What an NPC remembers of what the game did with its actions.

One wording for both paths: a failed action reaches the NPC as an `action_result` event (it is
significant: the NPC reconsiders), while a done action is written to its memory by whoever hears
of it (the API, the embedded demo) without waking the NPC. The NPC remembers deciding the action
already; a workflow task for "it went as planned" would cost as much as the decision itself.
"""

from __future__ import annotations

from datetime import datetime

from aiworld.memory.retrieval import valence_of
from aiworld.models import Memory

DONE_IMPORTANCE, FAILED_IMPORTANCE = 2, 4


def action_result_narration(action_id: str | None, outcome: str | None, detail: str | None) -> tuple[str, int, str]:
    """The memory's text, importance and emotion."""
    text = f"My action {action_id} was {outcome}" + (f": {detail}" if detail else "")
    if outcome == "done":
        return text, DONE_IMPORTANCE, "satisfied"
    return text, FAILED_IMPORTANCE, "fret"


def action_done_memory(action_id: str, detail: str | None, at: datetime, place: str | None) -> Memory:
    """Keyed by the action, so a result reported again (a bridge retry) is remembered once."""
    text, importance, emotion = action_result_narration(action_id, "done", detail)
    return Memory(
        memory_id=f"result-{action_id}",
        text=text[:600],
        importance=importance,
        emotion=emotion,
        created_at=at,
        valence=valence_of(emotion),
        place=place,
    )
