"""The world file: the NPCs a world starts with, its initial world state and its demo visitors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from aiworld.config import ConfigError
from aiworld.models import MAP_NAME_PATTERN, MAX_MAP_COORDINATE, NpcProfile, PlayerRef

MapSize = tuple[
    Annotated[int, Field(ge=1, le=MAX_MAP_COORDINATE + 1)], Annotated[int, Field(ge=1, le=MAX_MAP_COORDINATE + 1)]
]


class WorldDefinition(BaseModel):
    world: dict[str, dict[str, str]] = Field(default_factory=dict)
    # Width and height in cells of the world's maps, as the game's map cache has them (the world
    # viewer draws a map at its size; a map not listed is drawn around what lives on it).
    maps: dict[Annotated[str, Field(pattern=MAP_NAME_PATTERN)], MapSize] = Field(default_factory=dict)
    visitors: list[PlayerRef] = Field(default_factory=list)
    npcs: list[NpcProfile] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> WorldDefinition:
        seen: set[str] = set()
        for npc in self.npcs:
            if npc.npc_id in seen:
                raise ValueError(f"npc_id {npc.npc_id!r} appears twice")
            seen.add(npc.npc_id)
        return self


def demo_world_path() -> Path:
    return Path(__file__).parents[1] / "data" / "demo_world.yaml"


def load_world(path: Path | None = None) -> WorldDefinition:
    path = path or demo_world_path()
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"world file {path}: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"world file {path} is not valid YAML: {error}") from error
    try:
        return WorldDefinition.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"world file {path}: {where}: {first['msg']}") from error
