"""The one place where game rows become service messages and actions become game rows.

Rows from the game are untrusted: they become validated models or a precise reason to reject
them. Text bound for rAthena is cleaned (no colour codes, control characters or backslashes),
converted to the game's charset and cut on a character boundary to fit its column.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

import aiworld
from aiworld.models import (
    EMOTIONS,
    DialogueReplyAction,
    GameEvent,
    GameEventKind,
    PlayerRef,
    QueuedAction,
    TalkTurn,
    clean_game_text,
    describe_invalid,
)
from aiworld.world.politics import UNHELD

GAME_CHARSET = "utf-8"  # rAthena's tables are utf8mb4; set to e.g. "cp1252" for a latin-1 client
TEXT_COLUMN_BYTES = 255
REPLY_COLUMN_BYTES = 512
OPTIONS_COLUMN_BYTES = 160
DETAIL_COLUMN_BYTES = 255

EVENT_KINDS = {
    "touch": GameEventKind.PLAYER_NEARBY,
    "attacked": GameEventKind.PLAYER_ATTACKED,
    "item": GameEventKind.ITEM_RECEIVED,
}
# Events without an NPC, told to the NPCs near the player through the event coordinator.
WORLD_EVENT_KINDS = {"login": GameEventKind.PLAYER_NEARBY, "kill": GameEventKind.PLAYER_KILLED_MONSTER}

UNAVAILABLE_LINE = "I'm sorry, I can't talk right now."

# World-state keys as the API takes them (api/schemas.py WorldStateUpdate).
WORLD_KEY_LENGTH = 40
_NOT_IN_WORLD_KEYS = re.compile(r"[^a-z0-9_]")


class RejectedRow(ValueError):
    """A game row that can never become a valid message; the reason says why."""


def game_text(text: str, max_bytes: int, charset: str = GAME_CHARSET) -> str:
    """Text as it may be stored for a script: cleaned, representable, within `max_bytes`."""
    cleaned = clean_game_text(text)
    encoded = cleaned.encode(charset, errors="replace")
    if len(encoded) > max_bytes:
        encoded = encoded[:max_bytes]
    # Cutting bytes may split a character: decode what is whole.
    return encoded.decode(charset, errors="ignore")


def event_id_of(row_id: int) -> str:
    """The id of the event a row becomes: stable, so a re-post after a crash is dropped by the NPC.
    A row for several NPCs reaches each as `ev-{row}:{npc_id}` (the coordinator adds the NPC)."""
    return f"ev-{row_id}"


def player_of(row: dict[str, Any]) -> PlayerRef:
    try:
        return PlayerRef(
            char_id=row["char_id"],
            name=row["char_name"],
            level=row["base_level"] or 1,
            job_class=row["class"] or 0,
            map=row["map"],
            x=row["x"],
            y=row["y"],
        )
    except ValidationError as error:
        raise RejectedRow(f"player of row {row['id']}: {describe_invalid(error)}") from None


def game_event_of(row: dict[str, Any]) -> GameEvent:
    """An NPC event from an `ai_event` row (touch, attacked, item, or a login/kill for the NPCs near)."""
    kind = EVENT_KINDS.get(row["kind"]) or WORLD_EVENT_KINDS.get(row["kind"])
    if kind is None:
        raise RejectedRow(f"row {row['id']}: unknown event kind {row['kind']!r}")
    try:
        return GameEvent(
            event_id=event_id_of(row["id"]),
            kind=kind,
            player=player_of(row),
            item_id=row.get("item_id"),
            amount=row.get("amount"),
            detail=f"monster {row['detail']}" if row["kind"] == "kill" and row.get("detail") else None,
        )
    except ValidationError as error:
        raise RejectedRow(f"row {row['id']}: {describe_invalid(error)}") from None


def scope_near(row: dict[str, Any], radius: int) -> dict[str, Any]:
    """The scope of an event without an NPC (a login, a kill): the AI NPCs within `radius` cells
    of where the player stood, as `POST /ai/world/event` takes it."""
    if row.get("map") is None or row.get("x") is None or row.get("y") is None:
        raise RejectedRow(f"row {row['id']}: a {row['kind']} row needs map, x and y")
    return {"kind": "near", "map": row["map"], "x": row["x"], "y": row["y"], "radius": radius}


def talk_turn_of(row: dict[str, Any]) -> TalkTurn:
    try:
        return TalkTurn(turn_id=event_id_of(row["id"]), player=player_of(row), text=row["text"] or "")
    except ValidationError as error:
        raise RejectedRow(f"talk row {row['id']}: {describe_invalid(error)}") from None


@dataclass(frozen=True)
class Registration:
    npc_id: str
    unique_name: str
    name: str
    sprite: int
    map: str
    x: int
    y: int
    unwalkable: tuple[tuple[int, int], ...] = ()  # its spot and routine stops the map has no way to


def registration_of(row: dict[str, Any]) -> Registration:
    """`register` rows carry "<unique name>|<sprite>" in `detail`, e.g. "Lina the Baker#lina_baker|90",
    and in `text` the cells of its spot and routine that the game found unwalkable, e.g. "160,200 164,196"."""
    unique, _, sprite = (row.get("detail") or "").rpartition("|")
    if not unique or not sprite.isdigit() or not row.get("npc_id"):
        raise RejectedRow(f"register row {row['id']}: detail {row.get('detail')!r} is not '<name>|<sprite>'")
    cells = []
    for spot in (row.get("text") or "").split():
        x, _, y = spot.partition(",")
        if not (x.isdigit() and y.isdigit()):
            raise RejectedRow(f"register row {row['id']}: unwalkable cell {spot!r} is not 'x,y'")
        cells.append((int(x), int(y)))
    return Registration(
        npc_id=row["npc_id"],
        unique_name=unique,
        name=unique.split("#", 1)[0][:23],
        sprite=int(sprite),
        map=row["map"],
        x=row["x"],
        y=row["y"],
        unwalkable=tuple(dict.fromkeys(cells)),
    )


def registration_body(registration: Registration) -> dict[str, Any]:
    """What the API's registration takes from the game; `unwalkable` only when the map refused a cell."""
    body: dict[str, Any] = {
        "npc_id": registration.npc_id,
        "name": registration.name,
        "sprite": registration.sprite,
        "map": registration.map,
        "x": registration.x,
        "y": registration.y,
    }
    if registration.unwalkable:
        body["unwalkable"] = [list(cell) for cell in registration.unwalkable]
    return body


def action_row_of(queued: QueuedAction, unique_name: str) -> dict[str, Any]:
    """An `ai_action` row the dispatcher script executes (columns of rathena/sql/ai_world.sql)."""
    action = queued.action
    row: dict[str, Any] = {
        "action_id": queued.action_id,
        "npc_id": queued.npc_id,
        "npc_name": unique_name,
        "kind": action.kind,
        "map": queued.map,
        "x": 0,
        "y": 0,
        "char_id": 0,
        "item_id": 0,
        "amount": 0,
        "value": 0,
        "text": "",
    }
    match action.kind:
        case "say" | "announce":
            row["text"] = game_text(action.text, TEXT_COLUMN_BYTES)
            row["value"] = 1 if getattr(action, "scope", "map") == "server" else 0
            row["char_id"] = getattr(action, "to_char_id", None) or 0
        case "emote":
            row["value"] = EMOTIONS[action.emotion]
        case "walk_to" | "move":
            row["x"], row["y"] = action.x, action.y
        case "trade":
            row["item_id"], row["value"] = action.item_id, action.price
        case "give_item":
            row["char_id"], row["item_id"], row["amount"] = action.char_id, action.item_id, action.amount
        case "give_zeny":
            row["char_id"], row["value"] = action.char_id, action.amount
        case "start_quest":
            row["char_id"], row["value"] = action.char_id, action.quest_id
        case "spawn_monster":
            row["x"], row["y"], row["value"], row["amount"] = action.x, action.y, action.mob_id, action.amount
        case "weather":
            row["text"] = action.weather
    return row


def dialogue_row_of(reply: DialogueReplyAction, npc_id: str) -> dict[str, Any] | None:
    """The `ai_dialogue` row of a reply, or None when the turn did not come from a game row."""
    if not reply.turn_id.startswith("ev-") or not reply.turn_id[3:].isdigit():
        return None
    return {
        "event_id": int(reply.turn_id[3:]),
        "npc_id": npc_id,
        "char_id": reply.char_id,
        "reply": game_text(reply.text, REPLY_COLUMN_BYTES),
        "emotion": EMOTIONS.get(reply.emotion, -1),
        "options": dialogue_options(reply.options),
        "status": "ready",
    }


def population_key(map_name: str) -> str | None:
    """The world-state key of a map's population, in the API's key alphabet: `new_1-1` becomes
    `population_new_1_1`; instance maps (`1@tower`, `2@tower`, one per party) count together as
    `population_instance_tower`. None for a character with no map."""
    name = map_name.strip().lower()
    if "@" in name:
        name = "instance_" + name.split("@", 1)[1]
    name = _NOT_IN_WORLD_KEYS.sub("_", name)
    return f"population_{name}"[:WORLD_KEY_LENGTH] if name.strip("_") else None


def populations(maps_of_online_characters: Iterable[str]) -> dict[str, int]:
    """Characters online per population key."""
    counts: dict[str, int] = {}
    for map_name in maps_of_online_characters:
        key = population_key(map_name or "")
        if key is not None:
            counts[key] = counts.get(key, 0) + 1
    return counts


def dialogue_options(options: Iterable[str]) -> str:
    """Reply options as the dialogue script splits them: on `:`, so none may contain one."""
    return game_text(":".join(option.replace(":", " ") for option in options), OPTIONS_COLUMN_BYTES)


def unavailable_dialogue_row(event_row: dict[str, Any], line: str = UNAVAILABLE_LINE) -> dict[str, Any]:
    return {
        "event_id": event_row["id"],
        "npc_id": event_row["npc_id"],
        "char_id": event_row["char_id"] or 0,
        "reply": game_text(line, REPLY_COLUMN_BYTES),
        "emotion": EMOTIONS["sweat"],
        "options": "",
        "status": "unavailable",
    }


# --- castles and players' trades (rAthena's own tables) ------------------------------------------

GUILD_NAME_CHARS = 24  # rAthena's `guild`.`name`
MAX_ITEM_ID, MAX_ITEM_AMOUNT = 2_000_000, 30_000  # as GameEvent.item_id and .amount


def standard_castle_maps() -> dict[int, str]:
    """rAthena's standard castles, castle_id -> castle map (aiworld/data/castles.yaml)."""
    path = Path(aiworld.__file__).parent / "data" / "castles.yaml"
    return {int(castle_id): str(map_name) for castle_id, map_name in yaml.safe_load(path.read_text()).items()}


def faction_of_guild(guild_id: int) -> str:
    """A guild as a faction: by id, which a rename keeps and which always fits a faction id
    (a guild's name may be any 24 characters, and two names may clean to the same one)."""
    return f"guild_{guild_id}" if guild_id else UNHELD


def castle_event(castle_id: int, castle_map: str, guild_id: int, guild_name: str | None, change: int) -> GameEvent:
    """A castle's new owner for politics. `change` counts the owners the bridge has seen this castle
    get, so the id is the same when a crash makes the bridge post it again, and new when a guild
    takes back a castle it held before."""
    owner = faction_of_guild(guild_id)
    name = clean_game_text(guild_name or "")[:GUILD_NAME_CHARS] or owner
    facts: dict[str, str | int | float] = {"event": "castle", "map": castle_map, "owner": owner, "castle_id": castle_id}
    if guild_id:
        facts["owner_name"] = name
    text = f"The guild {name} holds {castle_map}" if guild_id else f"No guild holds {castle_map} any more"
    return GameEvent(
        event_id=f"castle-{castle_id}-{change}-g{guild_id}",
        kind=GameEventKind.WORLD_EVENT,
        text=text,
        importance=6,
        facts=facts,
    )


def sale_event(row: dict[str, Any]) -> GameEvent:
    """A `picklog` row of a vending sale, as the buyer received the items, for the economy."""
    item_id, amount = row.get("nameid"), row.get("amount")
    if not isinstance(item_id, int) or not 1 <= item_id <= MAX_ITEM_ID:
        raise RejectedRow(f"picklog row {row.get('id')}: no item id: {item_id!r}")
    if not isinstance(amount, int) or not 1 <= amount <= MAX_ITEM_AMOUNT:
        raise RejectedRow(f"picklog row {row.get('id')}: amount {amount!r} is not 1..{MAX_ITEM_AMOUNT}")
    return GameEvent(
        event_id=f"vend-{row['id']}",
        kind=GameEventKind.WORLD_EVENT,
        text="A player sold items from a vending shop",
        importance=1,
        facts={"event": "vending_sale", "sold_item": item_id, "sold_amount": amount},
    )
