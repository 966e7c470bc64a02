"""What the world tells its NPCs, and to whom (DESIGN.md §4b): the contract between the world
systems, the game's own events and the event coordinator that fans them out."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field, field_validator, model_validator

from aiworld.models import (
    MAP_NAME_PATTERN,
    MAX_MAP_COORDINATE,
    NPC_ID_PATTERN,
    GameEvent,
    GameEventKind,
    StrictModel,
    clean_game_text,
)

FACTION_PATTERN = r"^[a-z0-9_]{1,32}$"  # as NpcProfile.faction
NEWS_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,39}$"  # 39 + `:` + a 40-character npc id fit an 80-character event id
MAX_NEWS_CHARS = 200
MAX_NEAR_RADIUS = 60  # cells; a screen is about 30 wide


class ScopeKind(StrEnum):
    NPC = "npc"
    NEAR = "near"
    MAP = "map"
    FACTION = "faction"
    WORLD = "world"


_FIELDS_OF = {
    ScopeKind.NPC: {"npc_id"},
    ScopeKind.NEAR: {"map", "x", "y", "radius"},
    ScopeKind.MAP: {"map"},
    ScopeKind.FACTION: {"faction"},
    ScopeKind.WORLD: set(),
}


class Scope(StrictModel):
    """Who hears: one NPC, the NPCs within `radius` cells of a point, a map, a faction, everyone."""

    kind: ScopeKind
    npc_id: str | None = Field(default=None, pattern=NPC_ID_PATTERN)
    map: str | None = Field(default=None, pattern=MAP_NAME_PATTERN)
    x: int | None = Field(default=None, ge=0, le=MAX_MAP_COORDINATE)
    y: int | None = Field(default=None, ge=0, le=MAX_MAP_COORDINATE)
    radius: int | None = Field(default=None, ge=1, le=MAX_NEAR_RADIUS)
    faction: str | None = Field(default=None, pattern=FACTION_PATTERN)

    @model_validator(mode="after")
    def _fields_for_kind(self) -> Scope:
        wanted = _FIELDS_OF[self.kind]
        given = {name for name in ("npc_id", "map", "x", "y", "radius", "faction") if getattr(self, name) is not None}
        if missing := sorted(wanted - given):
            raise ValueError(f"a {self.kind.value} scope needs {', '.join(missing)}")
        if extra := sorted(given - wanted):
            raise ValueError(f"a {self.kind.value} scope takes no {', '.join(extra)}")
        return self


class Fact(StrEnum):
    """Keys of `WorldNews.facts` that NPCs act on (the offline policy; prompts show all facts)."""

    ITEM_ID = "item_id"
    ITEM_NAME = "item_name"
    PRICE_CHANGE_PCT = "price_change_pct"  # signed: +20 is a 20 % rise
    PRICE = "price"  # the new market price in zeny, when the economy set one
    CAUSE = "cause"  # why, in a few words: "orcs burned the herb fields"
    FACTION = "faction"
    OTHER_FACTION = "other_faction"
    STANCE = "stance"  # between faction and other_faction: war, peace, alliance, rivalry
    WEATHER = "weather"


class NewsSource(StrEnum):
    ECONOMY = "economy"
    POLITICS = "politics"
    ENVIRONMENT = "environment"
    QUESTS = "quests"
    GAME = "game"  # posted by the bridge: a kill in a field, a world announcement
    OPERATOR = "operator"


class WorldNews(StrictModel):
    """One piece of news for a scope. Each recipient hears it as a `world_event` whose id is
    `{news_id}:{npc_id}`, so a fan-out that is retried or resumed never tells an NPC twice."""

    news_id: str = Field(pattern=NEWS_ID_PATTERN)
    source: NewsSource
    scope: Scope
    text: str = Field(min_length=1, max_length=MAX_NEWS_CHARS)
    importance: int = Field(default=5, ge=1, le=10)
    # Structured facts the offline policy acts on without parsing prose (item ids, price changes,
    # factions at war, weather). Small and flat on purpose: it travels in every recipient's signal.
    facts: dict[str, str | int | float] = Field(default_factory=dict, max_length=16)
    occurred_at: datetime | None = None
    # What each recipient hears when it is a game event rather than word of the world (a kill in a
    # field, told to the NPCs near it): its id is replaced by the recipient's own.
    event: GameEvent | None = None

    @field_validator("text")
    @classmethod
    def _game_safe(cls, text: str) -> str:
        cleaned = clean_game_text(text)
        if not cleaned:
            raise ValueError("text is empty once control characters and markup are removed")
        return cleaned

    def event_for(self, npc_id: str) -> GameEvent:
        if self.event is not None:
            return self.event.model_copy(update={"event_id": f"{self.news_id}:{npc_id}"})
        return GameEvent(
            event_id=f"{self.news_id}:{npc_id}",
            kind=GameEventKind.WORLD_EVENT,
            occurred_at=self.occurred_at,
            text=self.text,
            importance=self.importance,
            detail=f"{self.source.value}",
            facts=self.facts or None,
        )
