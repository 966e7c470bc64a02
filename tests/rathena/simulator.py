"""A stand-in for the rAthena map-server that runs exactly the SQL of our NPC scripts.

Every statement comes from the scripts themselves: each `query_sql(sprintf("…", …))` in
rathena/npc/custom/ai-world/*.txt is tagged `// sql:<name>` on the line before, and this module
reads the format string from there at import time. Filled in the way the script fills it
(escape_sql ≙ the driver's escaping, %d ≙ integers), it is the very statement the game runs, so
the slice is exercised without a game client and cannot drift from the scripts.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomysql
from pymysql.converters import escape_string

from bridge.schema import install_schema

SCRIPTS = Path(__file__).parents[2] / "rathena" / "npc" / "custom" / "ai-world"
_TAG = re.compile(r"//\s*sql:(\w+)\s*$")
_FORMAT = re.compile(r'sprintf\("((?:[^"\\]|\\.)*)"')
_DUPLICATE = re.compile(r"^(\w+),(\d+),(\d+),\d+\tduplicate\(AIWorld_Base\)\t([^#\t]+)#(\w+)\t(\d+)")

CLIENT_INPUT_BYTES = 70  # the game client cuts `input` text here
REPLY_POLLS, REPLY_POLL_SECONDS = 16, 0.5  # the dialogue's sleep2 loop


def dispatcher_setting(name: str) -> int:
    """A constant the dispatcher sets in its OnInit (`.batch = 10;`)."""
    found = re.search(rf"^\s*\.{name} = (\d+);", (SCRIPTS / "ai_world.txt").read_text(encoding="utf-8"), re.M)
    if found is None:
        raise ValueError(f"ai_world.txt: the dispatcher sets no .{name}")
    return int(found.group(1))


ACTION_BATCH = dispatcher_setting("batch")
TICK_BUDGET_SECONDS = dispatcher_setting("tick_budget_ms") / 1000
SPAWN_CAP = dispatcher_setting("spawn_cap")
KNOWN_KINDS = {
    "say",
    "emote",
    "walk_to",
    "move",
    "trade",
    "announce",
    "spawn_monster",
    "give_item",
    "give_zeny",
    "start_quest",
    "weather",
}
MAP_WEATHERS = {"clear", "snow", "fog", "sakura", "leaves", "clouds", "clouds2", "fireworks"}


def script_statements() -> dict[str, str]:
    """name -> sprintf format of every tagged statement in the scripts (one format per name)."""
    statements: dict[str, str] = {}
    for path in sorted(SCRIPTS.glob("*.txt")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            tag = _TAG.search(line)
            if tag:
                found = _FORMAT.search(lines[number + 1])
                if found is None:
                    raise ValueError(f'{path.name}:{number + 2}: `sql:{tag.group(1)}` is not followed by sprintf("…")')
                text = found.group(1).replace('\\"', '"')
                if statements.setdefault(tag.group(1), text) != text:
                    raise ValueError(f"sql:{tag.group(1)} has two different statements")
    return statements


STATEMENTS = script_statements()


@dataclass(frozen=True)
class ScriptNpc:
    npc_id: str
    name: str
    map: str
    x: int
    y: int
    sprite: int

    @property
    def unique_name(self) -> str:
        return f"{self.name}#{self.npc_id}"


def dialogue_menu_tail() -> list[str]:
    """The entries the dialogue's `select` offers after the reply's own options."""
    text = (SCRIPTS / "ai_world.txt").read_text(encoding="utf-8")
    found = re.search(r'select\(\.@menu\$ \+ "([^"]+)"\)', text)
    if found is None:
        raise ValueError("ai_world.txt: the dialogue offers no menu after a reply")
    return found.group(1).split(":")


def dialogue_menu(offered: list[str]) -> list[str]:
    """What `select` offers after a reply: its options, less empty ones and those named like the
    fixed entries (compared without case, as the script's `compare` does), then the fixed entries."""
    tail = dialogue_menu_tail()
    fixed = {entry.lower() for entry in tail}
    return [option for option in offered if option and option.lower() not in fixed] + tail


def script_routines() -> dict[str, list[tuple[int, int]]]:
    """npc id -> the routine stops AIWorld_RoutineOf gives it (the ones registration checks)."""
    text = "\n".join(path.read_text(encoding="utf-8") for path in sorted(SCRIPTS.glob("*.txt")))
    found = re.findall(r'if \(\.@npc_id\$ == "(\w+)"\)\s*return "([\d, ]*)";', text)
    return {npc_id: [tuple(map(int, spot.split(","))) for spot in spots.split()] for npc_id, spots in found}


def script_npcs() -> list[ScriptNpc]:
    """The AI NPCs the scripts place in the game (the `duplicate(AIWorld_Base)` lines)."""
    npcs = []
    for path in sorted(SCRIPTS.glob("*.txt")):
        for line in path.read_text(encoding="utf-8").splitlines():
            match = _DUPLICATE.match(line)
            if match:
                map_name, x, y, name, npc_id, sprite = match.groups()
                npcs.append(ScriptNpc(npc_id, name, map_name, int(x), int(y), int(sprite)))
    return npcs


def escape_sql(value: str) -> str:
    return escape_string(value)


def fill(name: str, *args: Any) -> str:
    return STATEMENTS[name] % args


async def install_game_tables(db_params: dict) -> None:
    """Our tables (rathena/sql/ai_world.sql, twice, as an operator may) and the columns of rAthena's
    `char` table that the bridge reads — written here, not copied from rAthena."""
    connection = await aiomysql.connect(**db_params, autocommit=True)
    try:
        await install_schema(connection)
        await install_schema(connection)
        async with connection.cursor() as cursor:
            await cursor.execute(
                "CREATE TABLE IF NOT EXISTS `char` (`char_id` INT UNSIGNED NOT NULL PRIMARY KEY, "
                "`account_id` INT UNSIGNED NOT NULL, `name` VARCHAR(30) NOT NULL, `class` SMALLINT UNSIGNED NOT NULL DEFAULT 0, "
                "`base_level` SMALLINT UNSIGNED NOT NULL DEFAULT 1, `zeny` INT UNSIGNED NOT NULL DEFAULT 0, "
                "`last_map` VARCHAR(11) NOT NULL DEFAULT '', `last_x` SMALLINT UNSIGNED NOT NULL DEFAULT 53, "
                "`last_y` SMALLINT UNSIGNED NOT NULL DEFAULT 111, `online` TINYINT NOT NULL DEFAULT 0)"
            )
    finally:
        connection.close()


@dataclass
class Character:
    char_id: int
    account_id: int
    name: str
    base_level: int = 10
    job_class: int = 0
    map: str = "prontera"
    x: int = 150
    y: int = 180


class ScriptSimulator:
    """What the dispatcher and the AI NPCs do, one script step per method."""

    def __init__(self, db_params: dict) -> None:
        self._db = db_params
        self.npcs = {npc.npc_id: npc for npc in script_npcs()}
        self.online: dict[int, Character] = {}
        self.quests: set[tuple[int, int]] = set()  # (char id, quest id) in characters' quest logs
        self.weather: dict[str, str] = {}  # map -> the weather its flags show
        self.unwalkable: set[tuple[str, int, int]] = set()  # (map, x, y) that checkcell refuses

    async def _query(self, sql: str) -> list[tuple]:
        # query_sql: one statement, autocommitted, on the map-server's connection
        connection = await aiomysql.connect(**self._db, autocommit=True)
        try:
            async with connection.cursor() as cursor:
                await cursor.execute(sql)
                return list(await cursor.fetchall())
        finally:
            connection.close()

    async def register_all(self) -> None:
        """Every AI NPC's OnInit: its spot and routine stops checked against the map, then its row."""
        routines = script_routines()
        for npc in self.npcs.values():
            spots = [(npc.x, npc.y), *routines.get(npc.npc_id, [])]
            refused = " ".join(f"{x},{y}" for x, y in spots if (npc.map, x, y) in self.unwalkable)
            await self._query(
                fill(
                    "insert_register",
                    escape_sql(npc.npc_id),
                    "register",
                    escape_sql(npc.map),
                    npc.x,
                    npc.y,
                    escape_sql(f"{npc.unique_name}|{npc.sprite}"),
                    escape_sql(refused),
                )
            )

    async def log_in(self, character: Character) -> None:
        """The char-server marks the character online; OnPCLoginEvent writes its event."""
        self.online[character.char_id] = character
        await self._query(
            "INSERT INTO `char` (`char_id`, `account_id`, `name`, `class`, `base_level`, `last_map`, `last_x`, `last_y`, `online`) "
            f"VALUES ({character.char_id}, {character.account_id}, '{escape_sql(character.name)}', {character.job_class}, "
            f"{character.base_level}, '{character.map}', {character.x}, {character.y}, 1) "
            "ON DUPLICATE KEY UPDATE `online` = 1, `last_map` = VALUES(`last_map`), `last_x` = VALUES(`last_x`), `last_y` = VALUES(`last_y`)"
        )
        await self._player_event("insert_world_event", "login", character, "")

    async def _player_event(self, statement: str, kind: str, c: Character, detail: str) -> None:
        await self._query(
            fill(
                statement,
                kind,
                c.char_id,
                c.account_id,
                escape_sql(c.name),
                c.base_level,
                c.job_class,
                escape_sql(c.map),
                c.x,
                c.y,
                escape_sql(detail),
            )
        )

    async def player_kills(self, character: Character, mob_id: int) -> None:
        await self._player_event("insert_world_event", "kill", character, str(mob_id))

    async def player_touches(self, npc_id: str, c: Character) -> None:
        await self._query(
            fill(
                "insert_touch",
                escape_sql(npc_id),
                "touch",
                c.char_id,
                c.account_id,
                escape_sql(c.name),
                c.base_level,
                c.job_class,
                escape_sql(c.map),
                c.x,
                c.y,
            )
        )

    async def player_talks(self, npc_id: str, c: Character, text: str) -> int:
        """Clicking the NPC and typing a line; returns the event id the dialogue waits on."""
        typed = text.encode("utf-8")[:CLIENT_INPUT_BYTES].decode("utf-8", errors="ignore")
        # LAST_INSERT_ID is per connection: the script runs both on the map-server's one connection.
        connection = await aiomysql.connect(**self._db, autocommit=True)
        try:
            async with connection.cursor() as cursor:
                await cursor.execute(
                    fill(
                        "insert_talk",
                        escape_sql(npc_id),
                        "talk",
                        c.char_id,
                        c.account_id,
                        escape_sql(c.name),
                        c.base_level,
                        c.job_class,
                        escape_sql(c.map),
                        c.x,
                        c.y,
                        escape_sql(typed),
                    )
                )
                await cursor.execute(fill("last_event_id"))
                (event_id,) = await cursor.fetchone()
        finally:
            connection.close()
        return event_id

    async def wait_reply(self, event_id: int, polls: int = REPLY_POLLS) -> dict[str, Any] | None:
        """The dialogue's wait: poll, and on a reply mark it shown. `menu` is what `select` offers."""
        for _ in range(polls):
            await asyncio.sleep(REPLY_POLL_SECONDS)
            rows = await self._query(fill("select_reply", event_id))
            if rows:
                reply, emotion, options, status = rows[0]
                await self._query(fill("mark_reply", "shown", event_id))
                offered = options.split(":") if options else []
                return {
                    "reply": reply,
                    "emotion": emotion,
                    "options": offered,
                    "status": status,
                    "menu": dialogue_menu(offered),
                }
        return None

    async def player_picks(self, npc_id: str, c: Character, reply: dict[str, Any], choice: int) -> int | None:
        """Picking entry `choice` (1-based, as `select` counts) of a reply's menu: a reply option is the
        player's next line; returns its event id, or None for the fixed entries."""
        if choice > len(reply["menu"]) - len(dialogue_menu_tail()):
            return None
        return await self.player_talks(npc_id, c, reply["menu"][choice - 1])

    async def dispatcher_tick(self, budget_seconds: float = TICK_BUDGET_SECONDS) -> list[dict[str, Any]]:
        """One OnTimer1000: queued batches while they come full and the tick's budget lasts, each
        action marked running, executed, finished once."""
        executed = []
        started = time.monotonic()
        while True:
            rows = await self._query(fill("select_actions", ACTION_BATCH))
            for seq, unique, npc_id, kind, map_name, x, y, char_id, item, amount, value, text in rows:
                await self._query(fill("mark_running", seq))
                error = self._execute(unique, npc_id, kind, map_name, amount, char_id, value, text)
                outcome = "failed" if error else "done"
                await self._query(fill("finish_action", outcome, escape_sql(error), seq))
                executed.append(
                    {
                        "seq": seq,
                        "npc": unique,
                        "kind": kind,
                        "x": x,
                        "y": y,
                        "char_id": char_id,
                        "item": item,
                        "amount": amount,
                        "value": value,
                        "text": text,
                        "outcome": outcome,
                        "error": error,
                    }
                )
            if len(rows) < ACTION_BATCH or time.monotonic() - started >= budget_seconds:
                break
        await self.show_late_replies()
        return executed

    def _execute(
        self, unique: str, npc_id: str, kind: str, map_name: str, amount: int, char_id: int, value: int, text: str
    ) -> str:
        """The refusals S_Execute checks before it runs a stock command (each one is also in the
        script, which tests/rathena/test_scripts.py checks, and asserted on a real server by
        `make rathena-check`)."""
        npc = self.npcs.get(npc_id)
        if npc is None or npc.unique_name != unique:
            return f"no NPC named {unique} on this server"
        if npc.map != map_name:
            return f"the NPC is on {npc.map}, not {map_name}"
        if kind not in KNOWN_KINDS:
            return f"unknown action kind {kind}"
        if kind == "spawn_monster" and not 1 <= amount <= SPAWN_CAP:
            return f"spawn amount {amount} is outside 1..{SPAWN_CAP}"
        if kind == "weather":
            if text not in MAP_WEATHERS:
                return f"unknown weather {text}"
            self.weather[map_name] = text
        if kind in {"give_item", "give_zeny", "start_quest"} and char_id not in self.online:
            return f"character {char_id} is not online"
        if kind == "start_quest":
            if (char_id, value) in self.quests:
                return f"character {char_id} already has quest {value}"
            self.quests.add((char_id, value))
        return ""

    async def show_late_replies(self, late_after: int = 9) -> int:
        rows = await self._query(fill("select_late_replies", late_after))
        for event_id, char_id, _reply, _npc_id in rows:
            await self._query(fill("account_of_char", char_id))
            await self._query(fill("mark_reply", "shown" if char_id in self.online else "late", event_id))
        return len(rows)
