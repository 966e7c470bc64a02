"""Request and response bodies of the HTTP API (the domain models live in aiworld.models)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from aiworld.models import (
    MAP_NAME_PATTERN,
    MAX_MAP_COORDINATE,
    NPC_ID_PATTERN,
    Area,
    GameEvent,
    Personality,
    QueuedAction,
    ShopItem,
    StrictModel,
    TalkTurn,
)


class TokenRequest(StrictModel):
    api_key: str = Field(min_length=1, max_length=200)


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


# Strict: a JSON `false` or `"3"` is not a coordinate.
Coordinate = Annotated[int, Field(strict=True, ge=0, le=MAX_MAP_COORDINATE)]
Point = tuple[Coordinate, Coordinate]


class NpcRegistration(StrictModel):
    """What an NPC script knows of itself; the rest of the profile comes from the world file."""

    npc_id: str = Field(pattern=NPC_ID_PATTERN)
    name: str = Field(min_length=1, max_length=23)
    sprite: int = Field(ge=1, le=32_767)
    map: str = Field(pattern=MAP_NAME_PATTERN)
    x: Coordinate
    y: Coordinate
    area: Area | None = None
    role: str | None = Field(default=None, max_length=40)
    faction: str | None = Field(default=None, pattern=r"^[a-z0-9_]{1,32}$")
    personality: Personality | None = None
    wealth: int | None = Field(default=None, ge=0, le=2_000_000_000)
    goals: list[Annotated[str, Field(max_length=120)]] | None = Field(default=None, max_length=5)
    importance: int | None = Field(default=None, ge=1, le=10)
    shop: list[ShopItem] | None = Field(default=None, max_length=30)
    routine: list[Point] | None = Field(default=None, max_length=12)
    # Spawn or routine points the script found not walkable on the real map (`checkcell`).
    unwalkable: list[Point] | None = Field(default=None, max_length=20)


class RegisterResponse(BaseModel):
    npc_id: str
    workflow_id: str
    started: bool


class EventRequest(StrictModel):
    npc_id: str = Field(pattern=NPC_ID_PATTERN)
    event: GameEvent


class EventAccepted(BaseModel):
    accepted: bool = True
    workflow_id: str


class InteractionRequest(StrictModel):
    npc_id: str = Field(pattern=NPC_ID_PATTERN)
    turn: TalkTurn


class ClaimedActionOut(QueuedAction):
    attempts: int


class ActionBatch(BaseModel):
    actions: list[ClaimedActionOut]


class ActionResultRequest(StrictModel):
    outcome: Literal["done", "failed"]
    detail: str = Field(default="", max_length=200)


class ActionResultRecorded(BaseModel):
    recorded: bool


WorldSystem = Literal["economy", "politics", "environment"]
WorldValue = Annotated[str, Field(max_length=200)] | int | float


class WorldStateUpdate(StrictModel):
    system: WorldSystem
    values: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")], WorldValue] = Field(
        min_length=1, max_length=50
    )


class WorldState(BaseModel):
    economy: dict[str, str] = Field(default_factory=dict)
    politics: dict[str, str] = Field(default_factory=dict)
    environment: dict[str, str] = Field(default_factory=dict)
    # Written only by the quest cycle (open quests); each quest is in `quest:{id}`.
    quests: dict[str, str] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    detail: str


class FieldProblem(BaseModel):
    field: str
    message: str


class ValidationErrorBody(BaseModel):
    detail: list[FieldProblem]
