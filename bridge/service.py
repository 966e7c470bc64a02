"""`aiworld bridge`: moves rows between rAthena's MariaDB and the API, losing and doubling nothing.

Four pumps run side by side, each with its own backoff:
* events — `ai_event` rows in id order from a persisted cursor; the cursor moves only after the API
  took the row (or refused it for good, recorded in `ai_event_rejected`). A crash between the two
  re-posts the row under the same event id, which the NPC drops.
* actions — leased batches from the API become `ai_action` rows (INSERT IGNORE on the action id)
  or, for replies, `ai_dialogue` rows that are acknowledged at once.
* results — finished `ai_action` rows are reported to the API, then marked reported.
* world — online characters near AI NPCs become arrivals and departures (kept in `ai_presence`
  so a restart repeats neither), map populations and player shop prices become world state, and a
  castle that changed hands (`guild_castle`) is reported to politics once (`ai_castle_owner`).
* trades — players' vending sales, as rAthena logs them in `picklog`, go to the economy from a
  persisted cursor, one event per log row (`vend-{row}`), so a re-post is routed once.

No pump dies of data or of an outage: what the API or the game tables refuse for good is logged,
counted (`Bridge.stats`, with running totals in every log line) and skipped; any other failure of
a step is logged and counted and the step runs again after a growing pause.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiomysql
import pymysql
from pydantic import ValidationError

from aiworld.config import BridgeSettings, ConfigError, Settings
from aiworld.models import GameEvent, GameEventKind, PlayerRef, QueuedAction, describe_invalid
from aiworld.ops.tracing import configure_tracing
from bridge import translate
from bridge.api_client import ApiClient, ApiRefused, ApiUnavailable, ReplyLate
from bridge.translate import RejectedRow

log = logging.getLogger(__name__)

EVENT_BATCH = 100
ACTION_BATCH = 50
ACTION_LEASE_SECONDS = 60.0
NEAR_CELLS = 14  # a player within this many cells of an NPC is "near" (about a screen)
MAX_BACKOFF_SECONDS = 30.0
NO_SUCH_TABLE = 1146
# The API takes at most this many values per world-state update (api/schemas.py WorldStateUpdate).
WORLD_VALUES_PER_UPDATE = 50
# World state goes into every NPC's prompt: populations of the busiest maps only (and of every map
# an AI NPC stands on), besides the number of players online.
BUSIEST_MAPS_REPORTED = 30


@dataclass
class BridgeOptions:
    poll_seconds: float = 0.5
    world_seconds: float = 5.0
    # castle_id -> castle map: rAthena keeps it in db/castle_db.yml, which the bridge cannot read.
    castle_maps: dict[int, str] = field(default_factory=translate.standard_castle_maps)
    picklog_table: str = "picklog"

    @classmethod
    def of(cls, settings: BridgeSettings) -> BridgeOptions:
        return cls(
            castle_maps={**translate.standard_castle_maps(), **settings.castle_maps},
            picklog_table=settings.picklog_table,
        )


@dataclass
class KnownNpc:
    unique_name: str
    map: str
    x: int
    y: int


@dataclass
class BridgeStats:
    """What the bridge carried on past, per pump: operators see the running totals in the logs."""

    refused: Counter[str] = field(default_factory=Counter)  # rows or values refused for good, skipped
    outages: Counter[str] = field(default_factory=Counter)  # steps that found the API or the database down
    failures: Counter[str] = field(default_factory=Counter)  # steps that failed otherwise, run again


@dataclass
class Bridge:
    pool: aiomysql.Pool
    api: ApiClient
    options: BridgeOptions = field(default_factory=BridgeOptions)
    npcs: dict[str, KnownNpc] = field(default_factory=dict)
    stats: BridgeStats = field(default_factory=BridgeStats)
    # Population keys sent last time: a map that emptied is reported as 0, not left at its old count.
    _reported_populations: set[str] = field(default_factory=set)
    # Characters already logged as unusable, so a bad row is not logged again every few seconds.
    _unusable_characters: set[int] = field(default_factory=set)
    # Castle ids with no known map, already counted and logged once.
    _unknown_castles: set[int] = field(default_factory=set)

    def _refused(self, pump: str, what: str, reason: object) -> None:
        self.stats.refused[pump] += 1
        log.warning(
            "%s pump: %s refused, skipped: %s (%d refused so far)", pump, what, reason, self.stats.refused[pump]
        )

    # --- plumbing -------------------------------------------------------------------------------

    async def _rows(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        async with self.pool.acquire() as connection:
            async with connection.cursor(aiomysql.DictCursor) as cursor:
                await cursor.execute(sql, args)
                return list(await cursor.fetchall())

    async def _execute(self, sql: str, args: tuple | dict = ()) -> int:
        async with self.pool.acquire() as connection:
            async with connection.cursor() as cursor:
                with warnings.catch_warnings():
                    # INSERT IGNORE of a row that is there already is how a redelivery stays single.
                    warnings.filterwarnings("ignore", message="Duplicate entry")
                    return await cursor.execute(sql, args)

    async def _insert_dialogue(self, row: dict[str, Any]) -> None:
        await self._execute(
            "INSERT IGNORE INTO `ai_dialogue` (`event_id`, `npc_id`, `char_id`, `reply`, `emotion`, `options`, `status`) "
            "VALUES (%(event_id)s, %(npc_id)s, %(char_id)s, %(reply)s, %(emotion)s, %(options)s, %(status)s)",
            row,
        )

    # --- events ---------------------------------------------------------------------------------

    async def load_known_npcs(self) -> None:
        """Every NPC the scripts ever registered: where it stands and its script name."""
        for row in await self._rows(
            "SELECT `id`, `npc_id`, `map`, `x`, `y`, `detail` FROM `ai_event` WHERE `kind` = 'register' ORDER BY `id`"
        ):
            try:
                registration = translate.registration_of(row)
            except RejectedRow:
                continue
            self.npcs[registration.npc_id] = KnownNpc(
                registration.unique_name, registration.map, registration.x, registration.y
            )

    async def cursor(self) -> int:
        return await self._cursor("events")

    async def pump_events(self) -> int:
        """Post the next batch of game rows; returns how many rows were handled."""
        position = await self.cursor()
        rows = await self._rows(
            "SELECT `id`, `npc_id`, `kind`, `char_id`, `account_id`, `char_name`, `base_level`, `class`, `map`, `x`, `y`, "
            "`text`, `item_id`, `amount`, `detail` FROM `ai_event` WHERE `id` > %s ORDER BY `id` LIMIT %s",
            (position, EVENT_BATCH),
        )
        for row in rows:
            try:
                await self._handle_event(row)
            except (RejectedRow, ApiRefused) as refusal:
                self._refused("events", f"game row {row['id']}", refusal)
                await self._execute(
                    "INSERT IGNORE INTO `ai_event_rejected` (`event_id`, `reason`) VALUES (%s, %s)",
                    (row["id"], str(refusal)[:255]),
                )
            # Only now: a crash before this line re-posts the row under the same event id.
            await self._move_cursor("events", row["id"])
        return len(rows)

    async def _handle_event(self, row: dict[str, Any]) -> None:
        kind = row["kind"]
        if kind == "register":
            registration = translate.registration_of(row)
            await self.api.register(translate.registration_body(registration))
            self.npcs[registration.npc_id] = KnownNpc(
                registration.unique_name, registration.map, registration.x, registration.y
            )
        elif kind == "talk":
            await self._handle_talk(row)
        elif kind in translate.EVENT_KINDS:
            await self.api.send_event(row["npc_id"], translate.game_event_of(row))
        elif kind in translate.WORLD_EVENT_KINDS:
            # One request for all the NPCs near: the coordinator finds them and tells each once,
            # under `ev-{row}:{npc_id}`, also when this request is repeated after a crash.
            await self.api.world_event(translate.scope_near(row, NEAR_CELLS), translate.game_event_of(row))
        else:
            raise RejectedRow(f"row {row['id']}: unknown event kind {kind!r}")

    async def _handle_talk(self, row: dict[str, Any]) -> None:
        turn = translate.talk_turn_of(row)
        try:
            reply = await self.api.talk(row["npc_id"], turn)
        except ReplyLate:
            return  # the reply arrives as a queued `reply` action and becomes the same row
        except ApiRefused as refusal:
            if refusal.status_code in (404, 409):  # unknown, paused or retired: the player hears so
                await self._insert_dialogue(translate.unavailable_dialogue_row(row))
                return
            raise
        await self._insert_dialogue(
            {
                "event_id": row["id"],
                "npc_id": row["npc_id"],
                "char_id": row["char_id"],
                "reply": translate.game_text(reply.text, translate.REPLY_COLUMN_BYTES),
                "emotion": translate.EMOTIONS.get(reply.emotion, -1),
                "options": translate.dialogue_options(reply.options),
                "status": "ready",
            }
        )

    def _npcs_near(self, map_name: str | None, x: int | None, y: int | None) -> list[str]:
        if map_name is None or x is None or y is None:
            return []
        return [
            npc_id
            for npc_id, npc in self.npcs.items()
            if npc.map == map_name and max(abs(npc.x - x), abs(npc.y - y)) <= NEAR_CELLS
        ]

    # --- actions and results --------------------------------------------------------------------

    async def pump_actions(self) -> int:
        claimed = await self.api.claim_actions(ACTION_BATCH, ACTION_LEASE_SECONDS)
        for item in claimed:
            try:
                queued = QueuedAction.model_validate({key: value for key, value in item.items() if key != "attempts"})
            except ValidationError as error:
                self._refused(
                    "actions", f"malformed action {item.get('action_id')} (left to expire)", describe_invalid(error)
                )
                continue
            if queued.action.kind == "reply":
                row = translate.dialogue_row_of(queued.action, queued.npc_id)
                if row is not None:
                    await self._insert_dialogue(row)
                try:
                    await self.api.report_result(queued.action_id, "done", "reply stored for the dialogue")
                except ApiRefused as refusal:
                    log.warning("reply %s acknowledged already: %s", queued.action_id, refusal)
                continue
            known = self.npcs.get(queued.npc_id)
            unique = known.unique_name if known else f"{queued.npc_name}#{queued.npc_id}"
            row = translate.action_row_of(queued, unique)
            await self._execute(
                "INSERT IGNORE INTO `ai_action` (`action_id`, `npc_id`, `npc_name`, `kind`, `map`, `x`, `y`, `char_id`, "
                "`item_id`, `amount`, `value`, `text`) VALUES (%(action_id)s, %(npc_id)s, %(npc_name)s, %(kind)s, %(map)s, "
                "%(x)s, %(y)s, %(char_id)s, %(item_id)s, %(amount)s, %(value)s, %(text)s)",
                row,
            )
        return len(claimed)

    async def pump_results(self) -> int:
        rows = await self._rows(
            "SELECT `seq`, `action_id`, `status`, `detail` FROM `ai_action` "
            "WHERE `reported` = 0 AND `status` IN ('done', 'failed') ORDER BY `seq` LIMIT %s",
            (EVENT_BATCH,),
        )
        for row in rows:
            try:
                await self.api.report_result(row["action_id"], row["status"], row["detail"] or "")
            except ApiRefused as refusal:  # unknown or contradicting: reporting again cannot help
                log.warning("result of %s refused: %s", row["action_id"], refusal)
            await self._execute("UPDATE `ai_action` SET `reported` = 1 WHERE `seq` = %s", (row["seq"],))
        return len(rows)

    # --- world state ----------------------------------------------------------------------------

    async def pump_world(self) -> int:
        online = await self._rows(
            "SELECT `char_id`, `name`, `class`, `base_level`, `last_map`, `last_x`, `last_y` FROM `char` WHERE `online` = 1"
        )
        near: dict[tuple[str, int], PlayerRef] = {}
        for character in online:
            npcs_near = self._npcs_near(character["last_map"], character["last_x"], character["last_y"])
            if npcs_near and (player := self._player_of(character)):
                near.update({(npc_id, player.char_id): player for npc_id in npcs_near})
        changes = await self._sync_presence(near)
        await self._update_world("environment", self._population_values(character["last_map"] for character in online))
        await self._update_world("economy", await self._shop_prices())
        return changes + await self._sync_castles()

    def _player_of(self, character: dict[str, Any]) -> PlayerRef | None:
        try:
            return PlayerRef(
                char_id=character["char_id"],
                name=character["name"],
                level=character["base_level"] or 1,
                job_class=character["class"] or 0,
                map=character["last_map"],
                x=character["last_x"],
                y=character["last_y"],
            )
        except ValidationError as error:
            if character["char_id"] not in self._unusable_characters:
                self._unusable_characters.add(character["char_id"])
                self._refused("world", f"char {character['char_id']} (not announced to NPCs)", describe_invalid(error))
            return None

    def _population_values(self, maps: Iterable[str]) -> dict[str, int]:
        """Players online, and per map: the busiest maps, every map with an AI NPC, and 0 for a
        map reported before that is no longer among them."""
        counts = translate.populations(maps)
        npc_keys = {translate.population_key(npc.map) for npc in self.npcs.values()}
        busiest = sorted(counts, key=lambda key: (-counts[key], key))[:BUSIEST_MAPS_REPORTED]
        reported = {key: counts.get(key, 0) for key in [*busiest, *sorted(key for key in npc_keys if key)]}
        values = {"players_online": sum(counts.values()), **reported}
        values.update({key: 0 for key in sorted(self._reported_populations - reported.keys())})
        self._reported_populations = {key for key, count in reported.items() if count}
        return values

    async def _update_world(self, system: str, values: dict[str, int]) -> None:
        """In updates the API takes (at most WORLD_VALUES_PER_UPDATE values); one it refuses is skipped."""
        items = list(values.items())
        for start in range(0, len(items), WORLD_VALUES_PER_UPDATE):
            batch = dict(items[start : start + WORLD_VALUES_PER_UPDATE])
            try:
                await self.api.update_world(system, batch)
            except ApiRefused as refusal:
                self._refused("world", f"{system} update of {len(batch)} values", refusal)

    async def _sync_presence(self, near: dict[tuple[str, int], PlayerRef]) -> int:
        known = {
            (row["npc_id"], row["char_id"]): row
            for row in await self._rows(
                "SELECT `npc_id`, `char_id`, `char_name`, `since`, `announced` FROM `ai_presence`"
            )
        }
        changes = 0
        now = int(time.time())
        for key, player in near.items():
            row = known.get(key)
            if row is None:
                await self._execute(
                    "INSERT IGNORE INTO `ai_presence` (`npc_id`, `char_id`, `char_name`, `since`) VALUES (%s, %s, %s, %s)",
                    (*key, player.name, now),
                )
                row = {"since": now, "announced": 0}
            if not row["announced"]:  # also retried after a crash, under the same event id
                await self._announce(key, player, f"near-{key[0]}-{key[1]}-{row['since']}", GameEventKind.PLAYER_NEARBY)
                await self._execute(
                    "UPDATE `ai_presence` SET `announced` = 1 WHERE `npc_id` = %s AND `char_id` = %s", key
                )
                changes += 1
        for key, row in known.items():
            if key not in near:
                player = PlayerRef(char_id=key[1], name=row["char_name"])  # as stored when it was announced
                await self._announce(key, player, f"left-{key[0]}-{key[1]}-{row['since']}", GameEventKind.PLAYER_LEFT)
                await self._execute("DELETE FROM `ai_presence` WHERE `npc_id` = %s AND `char_id` = %s", key)
                changes += 1
        return changes

    async def _announce(self, key: tuple[str, int], player: PlayerRef, event_id: str, kind: GameEventKind) -> None:
        try:
            await self.api.send_event(key[0], GameEvent(event_id=event_id, kind=kind, player=player))
        except ApiRefused as refusal:  # an NPC the service does not run (yet): nothing to tell
            log.info("presence of char %s near %s not delivered: %s", key[1], key[0], refusal)

    async def _shop_prices(self) -> dict[str, int]:
        """Average asking price per item in players' vending shops, if the server keeps them."""
        try:
            rows = await self._rows(
                "SELECT c.`nameid` AS item_id, ROUND(AVG(v.`price`)) AS price FROM `vending_items` v "
                "JOIN `cart_inventory` c ON c.`id` = v.`cartinventory_id` GROUP BY c.`nameid` ORDER BY COUNT(*) DESC LIMIT 40"
            )
        except pymysql.err.ProgrammingError as error:
            if error.args[0] == NO_SUCH_TABLE:
                return {}
            raise
        return {f"price_{row['item_id']}": int(row["price"]) for row in rows}

    # --- castles and trades ----------------------------------------------------------------------

    async def _sync_castles(self) -> int:
        """Post each castle whose owner changed since the bridge last saw it; returns how many."""
        try:
            rows = await self._rows(
                "SELECT c.`castle_id`, c.`guild_id`, g.`name` FROM `guild_castle` c "
                "LEFT JOIN `guild` g ON g.`guild_id` = c.`guild_id` ORDER BY c.`castle_id`"
            )
        except pymysql.err.ProgrammingError as error:
            if error.args[0] == NO_SUCH_TABLE:  # a database without rAthena's guild tables
                return 0
            raise
        seen = {
            row["castle_id"]: row
            for row in await self._rows("SELECT `castle_id`, `guild_id`, `changes` FROM `ai_castle_owner`")
        }
        owners = {row["castle_id"]: (row["guild_id"], row["name"]) for row in rows}
        # rAthena deletes a broken guild's castle rows: a castle the bridge saw held is free now.
        owners.update({castle_id: (0, None) for castle_id in seen.keys() - owners.keys()})
        posted = 0
        for castle_id, (guild_id, guild_name) in sorted(owners.items()):
            last = seen.get(castle_id)
            if guild_id == (last["guild_id"] if last else 0):
                continue
            castle_map = self.options.castle_maps.get(castle_id)
            if castle_map is None:
                if castle_id not in self._unknown_castles:
                    self._unknown_castles.add(castle_id)
                    self._refused(
                        "castles", f"castle {castle_id}", "no map known for it: add it to AIWORLD_BRIDGE__CASTLE_MAPS"
                    )
                continue
            change = (last["changes"] if last else 0) + 1
            try:
                await self.api.world_event(
                    None, translate.castle_event(castle_id, castle_map, guild_id, guild_name, change)
                )
            except ApiRefused as refusal:
                self._refused("castles", f"owner of castle {castle_id}", refusal)
            # Only now: a crash before this line posts the change again under the same id.
            await self._execute(
                "INSERT INTO `ai_castle_owner` (`castle_id`, `guild_id`, `changes`) VALUES (%s, %s, %s) "
                "ON DUPLICATE KEY UPDATE `guild_id` = VALUES(`guild_id`), `changes` = VALUES(`changes`)",
                (castle_id, guild_id, change),
            )
            posted += 1
        return posted

    async def pump_trades(self) -> int:
        """Post the next batch of players' vending sales; returns how many log rows were handled.
        rAthena logs a sale twice, as the seller's loss and the buyer's gain: the gain counts."""
        position = await self._cursor("picklog")
        try:
            # The log's end now: rows up to it are all written (each is one autocommitted insert),
            # so once they are read the cursor may pass the many rows that are no sale.
            [top] = await self._rows(f"SELECT MAX(`id`) AS `id` FROM {self._picklog}")
            rows = await self._rows(
                f"SELECT `id`, `nameid`, `amount` FROM {self._picklog} "
                "WHERE `id` > %s AND `id` <= %s AND `type` = 'V' AND `amount` > 0 ORDER BY `id` LIMIT %s",
                (position, top["id"] or 0, EVENT_BATCH),
            )
        except pymysql.err.ProgrammingError as error:
            if error.args[0] == NO_SUCH_TABLE:  # logging to files, or no logs imported
                return 0
            raise
        for row in rows:
            try:
                await self.api.world_event(None, translate.sale_event(row))
            except (RejectedRow, ApiRefused) as refusal:
                self._refused("trades", f"picklog row {row['id']}", refusal)
            await self._move_cursor("picklog", row["id"])
        if len(rows) < EVENT_BATCH and (top["id"] or 0) > position:
            await self._move_cursor("picklog", top["id"])
        return len(rows)

    @property
    def _picklog(self) -> str:
        return ".".join(f"`{part}`" for part in self.options.picklog_table.split("."))

    async def _cursor(self, name: str) -> int:
        rows = await self._rows("SELECT `position` FROM `ai_bridge_cursor` WHERE `name` = %s", (name,))
        return int(rows[0]["position"]) if rows else 0

    async def _move_cursor(self, name: str, position: int) -> None:
        await self._execute(
            "INSERT INTO `ai_bridge_cursor` (`name`, `position`) VALUES (%s, %s) "
            "ON DUPLICATE KEY UPDATE `position` = GREATEST(`position`, VALUES(`position`))",
            (name, position),
        )

    # --- running --------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await _repeat("registry", self.load_known_npcs, 0, stop, self.stats, once=True)
        pumps = [
            _repeat("events", self.pump_events, self.options.poll_seconds, stop, self.stats),
            _repeat("actions", self.pump_actions, self.options.poll_seconds, stop, self.stats),
            _repeat("results", self.pump_results, self.options.poll_seconds, stop, self.stats),
            _repeat("world", self.pump_world, self.options.world_seconds, stop, self.stats),
            _repeat("trades", self.pump_trades, self.options.world_seconds, stop, self.stats),
        ]
        await asyncio.gather(*pumps)


RECOVERABLE = (ApiUnavailable, pymysql.err.OperationalError, pymysql.err.InterfaceError, OSError, asyncio.TimeoutError)


async def _repeat(
    name: str,
    step: Callable[[], Awaitable[Any]],
    idle_seconds: float,
    stop: asyncio.Event,
    stats: BridgeStats,
    *,
    once: bool = False,
) -> None:
    """Run a pump until stopped (or, `once`, until it succeeds): again at once while it has work,
    after a pause when idle, after a growing, jittered pause when the API or the database is down
    or the step failed otherwise. Nothing a step raises ends the pump (one pump ending would take
    the whole bridge down with it, and a restart would meet the same data)."""
    failures = 0
    while not stop.is_set():
        try:
            busy = await step()
            failures = 0
            if once:
                return
        except Exception as error:
            failures += 1
            delay = min(MAX_BACKOFF_SECONDS, 0.5 * 2**failures) * random.uniform(0.5, 1.0)
            if isinstance(error, RECOVERABLE):
                stats.outages[name] += 1
                log.warning(
                    "%s pump: %s; retrying in %.1fs (%d outages so far)", name, error, delay, stats.outages[name]
                )
            else:
                stats.failures[name] += 1
                log.exception(
                    "%s pump failed; retrying in %.1fs (%d failures so far)", name, delay, stats.failures[name]
                )
            await _sleep_or_stop(stop, delay)
            continue
        if not busy:
            await _sleep_or_stop(stop, idle_seconds)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


async def run_bridge(settings: Settings, stop: asyncio.Event, options: BridgeOptions | None = None) -> None:
    if not settings.api_keys:
        raise ConfigError("AIWORLD_API_KEYS: the bridge needs an API key to reach the API")
    configure_tracing(settings.observability, "bridge")
    pools: list[aiomysql.Pool] = []

    async def connect() -> None:
        # Autocommit: every statement is its own transaction, so reads never see an old snapshot.
        pools.append(
            await aiomysql.create_pool(
                host=settings.db_host,
                port=settings.db_port,
                user=settings.db_user,
                password=settings.db_password.get_secret_value(),
                db=settings.db_name,
                autocommit=True,
                minsize=1,
                maxsize=4,
                charset="utf8mb4",
            )
        )

    await _repeat("database", connect, 0, stop, BridgeStats(), once=True)
    if not pools:
        return  # stopped before the database ever answered
    pool = pools[0]
    api = ApiClient(settings.api_url, settings.api_keys[0].get_secret_value(), observability=settings.observability)
    try:
        await Bridge(pool, api, options or BridgeOptions.of(settings.bridge)).run(stop)
    finally:
        await api.aclose()
        pool.close()
        await pool.wait_closed()
