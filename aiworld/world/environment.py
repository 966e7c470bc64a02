"""The game calendar and the weather, pure and deterministic.

A game day lasts `game_day_seconds` of real time (dawn, day, dusk, night); seasons follow each other
every `days_per_season` game days. Each map's weather is a Markov chain whose transitions depend on
the season (no snow but in winter, storms mostly in summer and autumn); the draw is fixed by the
cycle id and the map, so a reset cycle draws the same weather. Natural events follow from weather
and season: a storm is announced on its map, spring blooms bring herbs to the market, an autumn
migration brings harmless monsters to a field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from aiworld.world.cycle import WorldChange, uniform

SEASONS = ("spring", "summer", "autumn", "winter")
WEATHERS = ("clear", "cloudy", "rain", "storm", "fog", "snow")
# What the game can show of each weather (rAthena's weather map flags; it has no rain flag): the
# environment asks the most important NPC of the map to set it. Rain and storms show as clouds.
MAP_FLAG_OF = {
    "clear": "clear",
    "cloudy": "clouds",
    "rain": "clouds2",
    "storm": "clouds2",
    "fog": "fog",
    "snow": "snow",
}

# Next-weather weights per season, from any current weather; the current weather keeps a bonus
# (weather lasts). Snow only in winter, rain and storms never in winter.
_SEASON_WEIGHTS: dict[str, dict[str, float]] = {
    "spring": {"clear": 4, "cloudy": 3, "rain": 3, "storm": 0.5, "fog": 1, "snow": 0},
    "summer": {"clear": 6, "cloudy": 2, "rain": 1, "storm": 1.5, "fog": 0, "snow": 0},
    "autumn": {"clear": 3, "cloudy": 3, "rain": 3, "storm": 1, "fog": 2, "snow": 0},
    "winter": {"clear": 2, "cloudy": 2, "rain": 0, "storm": 0, "fog": 1, "snow": 6},
}
PERSISTENCE = 3.0
BLOOM_CHANCE = 0.25  # per spring cycle
BLOOM_SUPPLY = 40
BLOOM_ITEM = 507  # Red Herb
MIGRATION_CHANCE = 0.2  # per autumn cycle and map
MIGRATING_MOB = 1002  # Poring: harmless, allowed by the game rules
PHASES = ((0.2, "night"), (0.3, "dawn"), (0.7, "day"), (0.8, "dusk"), (1.01, "night"))


@dataclass
class NaturalEvent:
    kind: str  # "storm", "bloom", "migration"
    map: str | None
    text: str


@dataclass
class EnvironmentStep:
    fields: dict[str, str]
    changes: list[WorldChange] = field(default_factory=list)
    events: list[NaturalEvent] = field(default_factory=list)


def calendar(now: datetime, game_day_seconds: float, days_per_season: int) -> tuple[int, str, str]:
    """(game day, day phase, season) at `now`."""
    elapsed = now.timestamp() / game_day_seconds
    game_day = int(elapsed)
    fraction = elapsed - game_day
    phase = next(name for limit, name in PHASES if fraction < limit)
    season = SEASONS[(game_day // days_per_season) % len(SEASONS)]
    return game_day, phase, season


def next_weather(current: str | None, season: str, draw: float) -> str:
    weights = dict(_SEASON_WEIGHTS[season])
    if current in weights and weights[current] > 0:
        weights[current] += PERSISTENCE
    total = sum(weights.values())
    point = draw * total
    for weather in WEATHERS:
        point -= weights[weather]
        if point < 0 and weights[weather] > 0:
            return weather
    return "clear"


def environment_step(
    state: dict[str, str],
    maps: list[str],
    now: datetime,
    cycle_id: str,
    game_day_seconds: float,
    days_per_season: int,
) -> EnvironmentStep:
    game_day, phase, season = calendar(now, game_day_seconds, days_per_season)
    fields = {"game_day": str(game_day), "day_phase": phase, "season": season}
    changes: list[WorldChange] = []
    events: list[NaturalEvent] = []
    if state.get("season") and state.get("season") != season:
        changes.append(
            WorldChange(
                what="season",
                before=state.get("season"),
                after=season,
                why=f"game day {game_day} begins the {season}",
                importance=6,
                scope={"kind": "world"},
                facts={"season": season, "game_day": game_day},
            )
        )
    if state.get("day_phase") and state.get("day_phase") != phase:
        changes.append(
            WorldChange(
                what="day_phase",
                before=state.get("day_phase"),
                after=phase,
                why=f"the {phase} of game day {game_day}",
                importance=2,
                facts={"day_phase": phase},
            )
        )
    for map_name in sorted(set(maps)):
        key = f"weather:{map_name}"
        before = state.get(key)
        weather = next_weather(before, season, uniform(cycle_id, "weather", map_name))
        fields[key] = weather
        if weather != before:
            changes.append(
                WorldChange(
                    what=key,
                    before=before,
                    after=weather,
                    why=f"{season} weather on {map_name}" + (f", after {before}" if before else ""),
                    importance=6 if weather == "storm" else 4,
                    scope={"kind": "map", "map": map_name},
                    facts={"map": map_name, "weather": weather, "season": season},
                )
            )
            if weather == "storm":
                events.append(NaturalEvent("storm", map_name, f"A storm breaks over {map_name}!"))
        if season == "autumn" and uniform(cycle_id, "migration", map_name) < MIGRATION_CHANCE:
            events.append(NaturalEvent("migration", map_name, f"Porings migrate through {map_name}."))
    if season == "spring" and uniform(cycle_id, "bloom") < BLOOM_CHANCE:
        events.append(NaturalEvent("bloom", None, "The fields bloom: herbs are plentiful."))
    for natural in events:
        if natural.kind != "storm":
            changes.append(
                WorldChange(
                    what=f"event:{natural.kind}" + (f":{natural.map}" if natural.map else ""),
                    after=natural.kind,
                    why=f"{season}: {natural.text}",
                    importance=5,
                    scope={"kind": "map", "map": natural.map} if natural.map else {"kind": "world"},
                    facts={"event": natural.kind, "season": season, **({"map": natural.map} if natural.map else {})},
                )
            )
    return EnvironmentStep(fields=fields, changes=changes, events=events)
