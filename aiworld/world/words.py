"""The words of world changes: what NPCs are told and the history shows.

The numbers come from the models; a model of the LLM tier `world` only phrases them. Its answer is
untrusted: each line is cleaned for the game and cut to a news line, and a change it left out or
phrased badly gets the offline writer's line, so every change has words whatever the model did.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from aiworld.models import DecisionUsage, clean_game_text
from aiworld.world.cycle import WorldChange
from aiworld.world.news import MAX_NEWS_CHARS

MAX_MODEL_LINE_CHARS = 400  # a longer line is not a news line: the offline writer's is used


class ChangeLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0, le=500)
    text: str = Field(min_length=1, max_length=MAX_MODEL_LINE_CHARS)


class WorldWords(BaseModel):
    """The schema the model answers in: one line per change, by the change's index."""

    model_config = ConfigDict(extra="forbid")

    lines: list[ChangeLine] = Field(default_factory=list, max_length=500)


@runtime_checkable
class WorldNarrator(Protocol):
    async def narrate(self, system: str, changes: list[WorldChange]) -> tuple[WorldWords, DecisionUsage]: ...


def offline_line(change: WorldChange) -> str:
    facts = change.facts
    kind = change.what.split(":", 1)[0]
    if kind == "price":
        text = f"Item {facts.get('item_id')} now costs {change.after}z (was {change.before}z): {facts.get('cause')}."
    elif kind == "conflict" and change.after == "conflict":
        text = f"{facts.get('faction_a')} and {facts.get('faction_b')} are in conflict: {change.why}"
    elif kind == "conflict":
        text = f"{facts.get('faction_a')} and {facts.get('faction_b')} made peace."
    elif kind == "weather":
        text = f"The weather on {facts.get('map')} turns {change.after}."
    elif kind == "season":
        text = f"The {change.after} has come."
    elif kind == "quest":
        text = f"Quest {change.after}: {change.why}"
    else:
        text = f"{change.what}: {change.why}"
    return clean_game_text(text)[:MAX_NEWS_CHARS]


def words_for(changes: list[WorldChange], words: WorldWords | None) -> list[WorldChange]:
    """The changes with their text: the model's line where it gave a usable one, else the offline one."""
    given = {line.index: clean_game_text(line.text) for line in (words.lines if words else [])}
    worded = []
    for index, change in enumerate(changes):
        line = given.get(index, "")
        if not line or len(line) > MAX_NEWS_CHARS:
            line = offline_line(change)
        worded.append(change.model_copy(update={"text": line or change.what}))
    return worded


class OfflineNarrator:
    """The offline writer behind the narrator interface (no LLM configured)."""

    async def narrate(self, system: str, changes: list[WorldChange]) -> tuple[WorldWords, DecisionUsage]:
        lines = [ChangeLine(index=index, text=offline_line(change)) for index, change in enumerate(changes)]
        return WorldWords(lines=lines), DecisionUsage(provider="offline", tier="world")
