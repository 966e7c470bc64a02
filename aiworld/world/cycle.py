"""What every world cycle reads, decides and writes: the shapes shared by the four systems.

A cycle reads its system's state and the game events routed to its inbox (an activity), computes
the next state with a pure model (workflow code, deterministic), has the changes put into words
(the LLM tier `world`, or the offline writer), then writes everything in one guarded step keyed by
the cycle id: a retried or reset cycle finds its write done and changes nothing twice.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from pydantic import BaseModel, Field

from aiworld.models import GameEvent, NpcProfile, QueuedAction
from aiworld.world.news import MAX_NEWS_CHARS, WorldNews

SYSTEMS = ("economy", "politics", "environment", "quests")
# Fields of a system's `world:{system}` hash that belong to the cycle machinery, not the world.
CURSOR_FIELD = "inbox_cursor"
CYCLE_FIELD = "last_cycle"
CYCLE_AT_FIELD = "last_cycle_at"


def stable_id(*parts: object, length: int = 16) -> str:
    """A short id that is the same every time for the same parts (a retried cycle's news and actions)."""
    return hashlib.sha256("|".join(str(part) for part in parts).encode()).hexdigest()[:length]


def uniform(*parts: object) -> float:
    """A number in [0, 1) fixed by its parts: chance in workflow code that a reset cycle repeats."""
    return int(stable_id(*parts, length=13), 16) / 16**13


class InboxEntry(BaseModel):
    """A game event the coordinator routed to a system, with what it knew of where it happened."""

    entry_id: str
    event: GameEvent
    npc_id: str | None = None
    map: str | None = None
    faction: str | None = None


class CycleParams(BaseModel):
    """Tunables a schedule hands every cycle (from WorldSettings), so `schedules apply` changes them."""

    game_day_seconds: float = 7_200
    days_per_season: int = 7
    weather_maps: list[str] = Field(default_factory=list)
    broadcast_min_importance: int = 5
    inbox_batch: int = 500
    history_max_entries: int = 5_000
    quest_ttl_seconds: float = 6 * 3_600
    max_open_quests: int = 8


class CycleInput(BaseModel):
    params: CycleParams = Field(default_factory=CycleParams)
    # Set by tests and by hand-started cycles; a scheduled run uses its own workflow id.
    cycle_id: str | None = None


class WorldChange(BaseModel):
    """One thing a cycle changed, and why, as it goes to the history (and maybe to the NPCs)."""

    what: str = Field(max_length=80)  # e.g. "price:507", "relation:bandits:guards", "weather:prontera"
    before: str | None = None
    after: str | None = None
    why: str = Field(max_length=300)  # the model's reason, in numbers and names
    importance: int = Field(default=3, ge=1, le=10)
    # Who should hear of it (a WorldNews scope as a dict), or None when it concerns nobody in particular.
    scope: dict[str, str | int] | None = None
    facts: dict[str, str | int | float] = Field(default_factory=dict)
    # Filled by the words step: what NPCs are told and the history shows.
    text: str = Field(default="", max_length=MAX_NEWS_CHARS)


class CycleRead(BaseModel):
    """What the read activity found: the system's state, its inbox and the NPCs it needs.

    `applied` holds the stored outcome when this cycle already wrote its changes (a retry or a
    reset): the workflow then only repeats the follow-ups, which are idempotent."""

    cycle_id: str
    state: dict[str, str] = Field(default_factory=dict)
    cursor: str = ""  # where the last written cycle stopped reading the inbox
    next_cursor: str = ""  # the last entry this cycle read
    inbox: list[InboxEntry] = Field(default_factory=list)
    refused_entries: int = 0
    npcs: list[NpcProfile] = Field(default_factory=list)
    other_state: dict[str, dict[str, str]] = Field(default_factory=dict)
    quests: dict[str, dict[str, str]] = Field(default_factory=dict)
    maps: list[str] = Field(default_factory=list)
    applied: CycleOutcome | None = None


class CycleWrite(BaseModel):
    """Every write of one cycle, applied at once by one script guarded by the cycle id."""

    state: dict[str, str] = Field(default_factory=dict)
    state_deleted: list[str] = Field(default_factory=list)
    factions: dict[str, dict[str, str]] = Field(default_factory=dict)
    quests: dict[str, dict[str, str]] = Field(default_factory=dict)
    open_quests: dict[str, float] = Field(default_factory=dict)  # quest id -> expiry (epoch s)
    closed_quests: list[str] = Field(default_factory=list)
    # Events this cycle hands to another system's next cycle (a delivered fetch quest adds supply).
    forwarded: dict[str, list[GameEvent]] = Field(default_factory=dict)


class RelationshipMove(BaseModel):
    """A relationship score an NPC's world changed (a quest done for it), written once by its id."""

    npc_id: str
    party: str
    delta: int = Field(ge=-100, le=100)
    change_id: str
    reason: str


class CycleOutcome(BaseModel):
    """What a cycle decided, kept with its write so that a re-run repeats the same follow-ups."""

    cycle_id: str
    system: str
    at: datetime
    cursor: str
    events_read: int = 0
    changes: list[WorldChange] = Field(default_factory=list)
    write: CycleWrite = Field(default_factory=CycleWrite)
    actions: list[QueuedAction] = Field(default_factory=list)
    relationships: list[RelationshipMove] = Field(default_factory=list)
    # Actions the game rules refused, with why: in the history, never in the game.
    refused: list[str] = Field(default_factory=list)
    news: list[WorldNews] = Field(default_factory=list)
    words_by: str = "offline"

    def summary(self) -> str:
        changed = ", ".join(change.what for change in self.changes[:6]) or "nothing"
        more = f" and {len(self.changes) - 6} more" if len(self.changes) > 6 else ""
        return (
            f"{self.system} cycle read {self.events_read} events; changed {changed}{more}; told {len(self.news)} news"
        )


CycleRead.model_rebuild()
