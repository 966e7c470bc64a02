"""The real-server check: our scripts and SQL on a real rAthena, with the service, the bridge and a
real client, each proof read from the game's own tables and the client's own console."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from aiworld.config import Settings
from aiworld.models import GameEvent, GameEventKind
from aiworld.ops.dev import Children, _wait_for_http, start_redis, start_temporal
from aiworld.store.keys import Keys
from aiworld.temporal import npc_workflow_id
from bridge.api_client import ApiClient
from rathena.check.client import Account, OpenKore
from rathena.check.server import SCHEMA_FILE, CheckFailed, Database, Ports, ServerTree, new_trouble, trouble_lines

ACCOUNT = Account("aiwcheck", "aiwcheck1")
ACCOUNT_ID, CHAR_ID, CHAR_NAME = 2000001, 150001, "Aria"
# Next to Lina the Baker (146,182 in ai_world_npcs.txt): inside her trigger area and in sight.
START = ("prontera", 148, 184)
TALK_NPC = ("lina_baker", "Lina the Baker")
FIRST_LINE = "Hello! What do you sell?"
BURST = 30  # actions queued at once to time the dispatcher
# A guild of the check's own and Kriemhild (prtg_cas01), castle 15 of rAthena's castle_db.
CHECK_GUILD_ID, CHECK_CASTLE_ID = 90001, 15
# A first OpenKore run computes its portals' line-of-sight table for every map: minutes on a slow machine.
LOGIN_TIMEOUT_SECONDS = 600


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def until(probe: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise CheckFailed(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)


class Report:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def step(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", flush=True)

    def ok(self, text: str) -> None:
        print(f"          ok  {text}", flush=True)

    def detail(self, text: str) -> None:
        print(f"              {text}", flush=True)


@dataclass
class Check:
    rathena_dir: Path
    openkore_dir: Path
    work: Path
    settings: Settings
    report: Report

    def __post_init__(self) -> None:
        base = self.settings
        self.db = Database(
            base.db_host,
            base.db_port,
            base.db_user,
            base.db_password.get_secret_value(),
            f"aiworld_check_{secrets.token_hex(4)}",
        )
        self.ports = Ports(free_port(), free_port(), free_port())
        self.tree = ServerTree(self.rathena_dir, self.work / "server")
        self.children = Children()
        self.client: OpenKore | None = None
        self.keys = Keys(f"aiworld-check:{secrets.token_hex(4)}:")
        self.redis_url: str | None = None

    # --- the database --------------------------------------------------------------------------

    def create_database(self) -> None:
        """A database and a user of the check's own (rAthena's conf cannot say "no password")."""
        admin, user = self.db, self.db.name
        password = secrets.token_hex(12)
        self.admin_sql(
            f"CREATE DATABASE `{admin.name}` CHARACTER SET utf8mb4;"
            + "".join(
                f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}';"
                f"GRANT ALL ON `{admin.name}`.* TO '{user}'@'{host}';"
                for host in ("127.0.0.1", "localhost")
            )
        )
        self.db = Database(admin.host, admin.port, user, password, admin.name)
        for name in ("main.sql", "logs.sql"):
            self.db.import_file(self.rathena_dir / "sql-files" / name)
        self.db.import_file(SCHEMA_FILE)
        self.db.import_file(SCHEMA_FILE)  # an operator may import it twice: it must not fail
        map_name, x, y = START
        self.db.run_sql(
            "INSERT INTO `login` (`account_id`, `userid`, `user_pass`, `sex`, `email`) "
            f"VALUES ({ACCOUNT_ID}, '{ACCOUNT.username}', '{ACCOUNT.password}', 'F', 'check@aiworld.invalid');"
            "INSERT INTO `char` (`char_id`, `account_id`, `char_num`, `name`, `class`, `base_level`, `job_level`, `zeny`, "
            "`str`, `agi`, `vit`, `int`, `dex`, `luk`, `max_hp`, `hp`, `max_sp`, `sp`, `last_map`, `last_x`, `last_y`, "
            "`save_map`, `save_x`, `save_y`, `hair`) "
            f"VALUES ({CHAR_ID}, {ACCOUNT_ID}, 0, '{CHAR_NAME}', 0, 10, 1, 500, 5, 5, 5, 5, 5, 5, 300, 300, 50, 50, "
            f"'{map_name}', {x}, {y}, '{map_name}', {x}, {y}, 1);"
        )

    def admin_sql(self, sql: str) -> None:
        base = self.settings
        admin = Database(base.db_host, base.db_port, base.db_user, base.db_password.get_secret_value(), "")
        admin.run_sql(sql)

    def drop_database(self) -> None:
        name = self.db.name
        self.admin_sql(
            f"DROP DATABASE IF EXISTS `{name}`; DROP USER IF EXISTS '{name}'@'127.0.0.1', '{name}'@'localhost'"
        )

    def forget_state(self) -> None:
        """The state store may be the operator's own: once the worker has stopped, the check removes
        every key it wrote there. (A store it started itself keeps its data in the check's folder.)"""
        if self.redis_url != self.settings.redis_url:
            return  # the service never started, or the store was the check's own
        store = redis.Redis.from_url(self.redis_url)
        try:
            for key in store.scan_iter(match=f"{self.keys.prefix}*", count=500):
                store.delete(key)
        finally:
            store.close()

    def rows(self, sql: str) -> list[list[str]]:
        return [line.split("\t") for line in self.db.run_sql(sql).splitlines()]

    # --- 1. lint -------------------------------------------------------------------------------

    def lint(self) -> int:
        r = self.report
        r.step("map-server --run-once, stock scripts only (the baseline)")
        self.tree.build(self.db, self.ports, with_our_scripts=False)
        baseline = self.tree.run_once()
        _loaded(baseline)
        self.baseline = baseline
        r.detail(f"{len(baseline)} lines, {len(trouble_lines(baseline))} [Error]/[Warning] lines of stock rAthena")
        r.step("map-server --run-once with rathena/npc/custom/ai-world/*.txt")
        self.tree.build(self.db, self.ports)
        ours = self.tree.run_once()
        r.detail(_loaded(ours))
        trouble = new_trouble(baseline, ours)
        if trouble:
            raise CheckFailed("our scripts make the map-server complain:\n    " + "\n    ".join(trouble))
        r.ok("no script error, [Error], [Warning], missing curly or failed command from our files")
        registered = self.rows(
            "SELECT `npc_id`, IFNULL(`text`, '') FROM `ai_event` WHERE `kind` = 'register' ORDER BY `id`"
        )
        placed = len(
            re.findall(r"duplicate\(AIWorld_Base\)", (self.tree.root / "aiworld-npc" / "ai_world_npcs.txt").read_text())
        )
        if len(registered) != placed:
            raise CheckFailed(f"OnInit registered {len(registered)} NPCs, the script places {placed}")
        unwalkable = {row[0]: row[1] for row in registered if len(row) > 1 and row[1]}
        if unwalkable:
            raise CheckFailed(f"spots or routine stops the map cannot walk to: {unwalkable}")
        r.ok(f"OnInit registered all {placed} AI NPCs; checkcell found every spot and routine stop walkable")
        # The live servers register again; the bridge must see those rows only.
        self.db.run_sql("DELETE FROM `ai_event`")
        return placed

    # --- 2. the service and the game -----------------------------------------------------------

    def start_service(self) -> None:
        r = self.report
        data = self.work / "service"
        data.mkdir(parents=True, exist_ok=True)
        service = self.settings.model_copy(
            update={
                "data_dir": data,
                "temporal_port": free_port(),
                "temporal_ui_port": free_port(),
                "api_port": free_port(),
                "redis_key_prefix": self.keys.prefix,
                "db_name": self.db.name,
            }
        )
        r.step("starting Temporal (with our search attributes), the state store, worker, API and bridge")
        start_temporal(service, self.children)
        redis_url = service.redis_url
        probe = redis.Redis.from_url(redis_url, socket_connect_timeout=1)
        try:
            probe.ping()
        except (redis.RedisError, OSError):  # none there: the embedded one, as `aiworld dev` does
            redis_url = start_redis(service, self.children)
        finally:
            probe.close()
        api_url = f"http://127.0.0.1:{service.api_port}"
        self.env = {
            **os.environ,
            "AIWORLD_TEMPORAL_ADDRESS": f"127.0.0.1:{service.temporal_port}",
            "AIWORLD_REDIS_URL": redis_url,
            "AIWORLD_REDIS_KEY_PREFIX": self.keys.prefix,
            "AIWORLD_API_KEYS": secrets.token_urlsafe(24),
            "AIWORLD_JWT_SECRET": secrets.token_urlsafe(32),
            "AIWORLD_API_HOST": "127.0.0.1",
            "AIWORLD_API_PORT": str(service.api_port),
            "AIWORLD_API_URL": api_url,
            "AIWORLD_DB_HOST": self.db.host,
            "AIWORLD_DB_PORT": str(self.db.port),
            "AIWORLD_DB_USER": self.db.user,
            "AIWORLD_DB_PASSWORD": self.db.password,
            "AIWORLD_DB_NAME": self.db.name,
            # The offline policy: the same answers every run, no network, no key.
            "AIWORLD_LLM__DEFAULT_PROVIDER": "offline",
            "AIWORLD_CONFIG": "",
        }
        self.redis_url = redis_url
        cli = [sys.executable, "-m", "aiworld.cli"]
        logs = data / "logs"
        self.children.start("worker", [*cli, "worker"], self.env, logs / "worker.log")
        self.children.start("api", [*cli, "api"], self.env, logs / "api.log")
        asyncio.run(_wait_for_http(f"{api_url}/health", self.children))
        self.children.start("bridge", [*cli, "bridge"], self.env, logs / "bridge.log")
        r.ok(f"API {api_url}, Temporal {self.env['AIWORLD_TEMPORAL_ADDRESS']}, state store {redis_url}")
        checks = ["--check", "temporal", "--check", "redis", "--check", "mariadb"]
        doctor = subprocess.run([*cli, "doctor", *checks], env=self.env, capture_output=True, text=True)
        if doctor.returncode != 0:
            raise CheckFailed(f"aiworld doctor found problems:\n{doctor.stdout}")
        r.ok("aiworld doctor: Temporal with our search attributes, the state store, the AI World tables")

    def start_game(self) -> None:
        r = self.report
        r.step(f"starting login/char/map servers (ports {self.ports.login}/{self.ports.char}/{self.ports.map})")
        logs = self.work / "server-logs"
        for server in ("login-server", "char-server", "map-server"):
            self.children.start(server, self.tree.command(server), {**os.environ}, logs / f"{server}.log")
        self.map_log = logs / "map-server.log"

        def map_online() -> bool:
            self.children.check_alive()
            return "Map Server is now online" in _plain_log(self.map_log)

        until(map_online, 600, "the map-server to come online")
        r.ok("map-server online")

    # --- 3. proofs ------------------------------------------------------------------------------

    def registration_starts_workflows(self, placed: int) -> None:
        r = self.report
        r.step("registration -> workflows")

        def registered() -> list[str] | None:
            npc_ids = [
                row[0] for row in self.rows("SELECT DISTINCT `npc_id` FROM `ai_event` WHERE `kind` = 'register'")
            ]
            return npc_ids if len(npc_ids) == placed else None

        npc_ids = until(registered, 120, f"{placed} register rows from the live map-server")

        async def running() -> list[str]:
            client = await Client.connect(self.env["AIWORLD_TEMPORAL_ADDRESS"])
            alive = []
            for npc_id in npc_ids:
                try:
                    described = await client.get_workflow_handle(npc_workflow_id(npc_id)).describe()
                except RPCError:
                    continue
                if described.status is WorkflowExecutionStatus.RUNNING:
                    alive.append(npc_id)
            return alive

        until(
            lambda: len(asyncio.run(running())) == placed,
            120,
            "a running workflow for every registered NPC",
            interval=1,
        )
        rejected = self.rows("SELECT `event_id`, `reason` FROM `ai_event_rejected`")
        if rejected:
            raise CheckFailed(f"the API refused game rows: {rejected}")
        r.ok(f"{placed} register rows -> {placed} running NpcLifeWorkflow (npc-<id>), no row refused")

    def memories(self, npc_id: str) -> list[str]:
        assert self.redis_url is not None, "the service runs before its memories are read"
        store = redis.Redis.from_url(self.redis_url, decode_responses=True)
        try:
            ids: list[str] = store.zrange(self.keys.memory_index(npc_id), 0, -1)  # type: ignore[assignment]
            return [json.loads(store.hget(self.keys.memory(npc_id, mid), "json") or "{}")["text"] for mid in ids]
        finally:
            store.close()

    @property
    def player(self) -> OpenKore:
        """The logged-in client; asked for only after `log_in`."""
        if self.client is None:
            raise CheckFailed("no client has logged in yet")
        return self.client

    def log_in(self) -> OpenKore:
        r = self.report
        r.step(f"OpenKore logs in {CHAR_NAME} (server type kRO_RagexeRE_2021_11_03) next to {TALK_NPC[1]}")
        self.client = OpenKore(self.openkore_dir, self.work / "openkore", ACCOUNT, self.ports.login)
        self.client.start()
        self.client.wait_for(r"You are now in the game", LOGIN_TIMEOUT_SECONDS)
        r.ok("in the game")
        return self.client

    def event_to_remembered_action(self) -> None:
        """The login near Lina is a game event: she reacts, the real dispatcher runs her action, the
        bridge reports it and she remembers how it went."""
        r = self.report
        r.step("an event -> an action row done by the real dispatcher -> reported -> remembered")
        npc_id, name = TALK_NPC
        until(
            lambda: self.rows(f"SELECT `id` FROM `ai_event` WHERE `kind` = 'login' AND `char_id` = {CHAR_ID}"),
            60,
            "the login event row",
        )

        def reported() -> list[list[str]] | None:
            rows = self.rows(
                f"SELECT `action_id`, `kind`, `status`, `detail`, `text` FROM `ai_action` WHERE `npc_id` = '{npc_id}' "
                "AND `reported` = 1 AND `status` = 'done' ORDER BY `seq`"
            )
            # Her greeting is an emote and a line: the line is what the client must show.
            return rows if any(row[1] == "say" for row in rows) else None

        rows = until(reported, 90, f"{name}'s greeting done and reported")
        for action_id, kind, _status, *text in rows:
            r.detail(f"{action_id}: {kind} {text[-1] if text else ''!r} done, reported")
        action_id = rows[0][0]
        memory = f"My action {action_id} was done"
        until(lambda: memory in self.memories(npc_id), 60, f"{name} remembering {memory!r}")
        r.ok(f"{name} remembers: {memory!r}")
        said = next(text[-1] for _id, kind, _status, *text in rows if kind == "say")
        r.ok(f"the client heard it, the name once: {self._heard(name, said, 0)!r}")

    def _heard(self, name: str, text: str, since: int) -> str:
        """What the client shows of an NPC's speech: "[dist=…] <name> (<n>): <text>". The game sends
        "<name> : <text>"; a second name in the text would show after the colon."""
        return self.player.wait_for(rf"{re.escape(name)} \(\d+\): {re.escape(text)}$", 30, since=since).string.strip()

    def news_announced_once(self) -> None:
        """World news reaches Guard Gareth; he warns the map on his own, and the player reads his
        name once in front of it (the game adds it; the service's text must not)."""
        r = self.report
        r.step("world news -> Guard Gareth's own announcement -> the client")
        news = f"Orcs were seen near the west gate {secrets.token_hex(2)}"
        event = GameEvent(
            event_id=f"check-news-{secrets.token_hex(4)}", kind=GameEventKind.WORLD_EVENT, text=news, importance=8
        )

        async def tell() -> None:
            api = ApiClient(self.env["AIWORLD_API_URL"], self.env["AIWORLD_API_KEYS"])
            try:
                await api.send_event("gareth_guard", event)
            finally:
                await api.aclose()

        mark = len(self.player.lines)
        asyncio.run(tell())
        line = self.player.wait_for(rf"{re.escape(news)}", 60, since=mark).string.strip()
        if not line.startswith("[S] Guard Gareth: ") or line.count("Guard Gareth") != 1:
            raise CheckFailed(f"the announcement does not carry the speaker exactly once: {line!r}")
        r.ok(f"client: {line!r}")

    # --- the dialogue, as a player has it ------------------------------------------------------

    def _npc_index(self, name: str) -> int:
        mark = self.player.command("nl")
        # The client knows the NPC by its whole script name ("Lina the Baker#lina_baker", cut at 24 bytes).
        found = self.player.wait_for(rf"^\s*(\d+)\s+{re.escape(name)}[#\s]", 20, since=mark)
        return int(found.group(1))

    def _responses(self, since: int) -> list[str]:
        """The menu the client lists (`talk resp`), without OpenKore's own "Cancel Chat"."""
        header = self.player.wait_for(r"-+ Responses \(", 30, since=since)
        start = self.player.lines.index(header.string, since)
        self.player.wait_for(r"^-{40}$", 10, since=start + 1)
        entries = []
        for line in self.player.lines[start + 2 :]:
            if re.fullmatch(r"-{40}", line):
                break
            found = re.match(r"^(\d+)\s+(.*\S)\s*$", line)
            if found:
                entries.append(found.group(2))
        return [entry for entry in entries if entry != "Cancel Chat"]

    def _turn(self, text: str, since: int) -> tuple[str, list[str]]:
        """Wait for the reply row of the player's line, then for the client to show it whole."""
        npc_id, name = TALK_NPC
        escaped = text.replace("'", "''")
        row = until(
            lambda: self.rows(
                "SELECT d.`event_id`, d.`reply`, d.`options`, d.`status` FROM `ai_dialogue` d JOIN `ai_event` e ON e.`id` = d.`event_id` "
                f"WHERE e.`kind` = 'talk' AND e.`npc_id` = '{npc_id}' AND e.`char_id` = {CHAR_ID} AND e.`text` = '{escaped}' "
                "AND d.`status` = 'shown'"
            ),
            40,
            f"the reply to {text!r} shown",
        )[0]
        event_id, reply, options = row[0], row[1], row[2]
        menu = self._responses(since)
        self.player.wait_for(r"Type 'talk resp #'", 10, since=since)
        dialogue_line = re.compile(rf"^{re.escape(name)}(?:#\S*)?: (.*)$")
        said = [found.group(1) for line in self.player.lines[since:] if (found := dialogue_line.match(line))]
        shown = " ".join(part for part in said if not part.startswith("["))
        if " ".join(reply.split()) not in " ".join(shown.split()):
            raise CheckFailed(f"reply row {event_id} says {reply!r}, the client's dialogue shows {said!r}")
        fixed = ["Say something else", "Goodbye"]
        offered = [
            option
            for option in options.split(":")
            if option and option.lower() not in {entry.lower() for entry in fixed}
        ]
        if menu != offered + fixed:
            raise CheckFailed(
                f"the client's menu is {menu!r}, expected the reply's options and the two fixed entries {offered + fixed!r}"
            )
        return reply, menu

    def dialogue(self) -> list[str]:
        r = self.report
        npc_id, name = TALK_NPC
        r.step(f"the client clicks {name}, types a line, reads the reply, picks an option")
        index = self._npc_index(name)
        mark = self.player.command(f"talk {index}")
        self.player.wait_for(r"-+ Responses \(", 30, since=mark)
        mark = self.player.command("talk resp 0")  # Talk (she also has a shop)
        self.player.wait_for(rf"^{re.escape(name)}(#\S*)?: What would you like to say\?", 30, since=mark)
        self.player.wait_for(r"Type 'talk text'", 30, since=mark)  # the input box is open
        mark = self.player.command(f'talk text "{FIRST_LINE}"')  # quoted: the step ends at a space otherwise
        transcript_start = mark
        reply, menu = self._turn(FIRST_LINE, mark)
        r.ok(f"reply shown in the client's dialogue: {reply!r}")
        r.ok(f"menu offered: {menu}")
        if len(menu) < 3:
            raise CheckFailed(f"{name}'s reply came with no options to pick: {menu}")
        picked = menu[0]
        mark = self.player.command("talk resp 0")
        second, menu = self._turn(picked, mark)
        r.ok(f"picked {picked!r}: it went back as the next turn, answered {second!r}")
        mark = self.player.command(f"talk resp {len(menu) - 1}")  # Goodbye
        transcript = [line for line in self.player.lines[transcript_start - 1 :] if line.strip()]
        return transcript

    # --- every action kind and every refusal, on the real dispatcher --------------------------

    def _queue(self, action_id: str, kind: str, npc: tuple[str, str] = TALK_NPC, **values: Any) -> None:
        row = {
            "map": "prontera",
            "x": 0,
            "y": 0,
            "char_id": 0,
            "item_id": 0,
            "amount": 0,
            "value": 0,
            "text": "",
            **values,
        }
        npc_id, name = npc
        text = str(row["text"]).replace("'", "''")
        self.db.run_sql(
            "INSERT INTO `ai_action` (`action_id`, `npc_id`, `npc_name`, `kind`, `map`, `x`, `y`, `char_id`, `item_id`, "
            f"`amount`, `value`, `text`) VALUES ('{action_id}', '{npc_id}', '{name}#{npc_id}', '{kind}', '{row['map']}', "
            f"{row['x']}, {row['y']}, {row['char_id']}, {row['item_id']}, {row['amount']}, {row['value']}, '{text}')"
        )

    def actions(self) -> None:
        r = self.report
        r.step("every action kind and every refusal, executed by the real dispatcher")
        gareth = ("gareth_guard", "Guard Gareth")
        run = secrets.token_hex(3)
        # (action id, kind, npc, values, expected detail: "" for done)
        cases: list[tuple[str, str, tuple[str, str], dict[str, Any], str]] = [
            ("say", "say", TALK_NPC, {"text": f"Fresh bread, {run}!"}, ""),
            ("emote", "emote", TALK_NPC, {"value": 1}, ""),
            ("walk", "walk_to", TALK_NPC, {"x": 150, "y": 186}, ""),
            ("move", "move", TALK_NPC, {"x": 146, "y": 182}, ""),
            ("trade", "trade", TALK_NPC, {"item_id": 519, "value": 44}, ""),
            ("announce", "announce", gareth, {"text": f"Orcs march on the gate {run}"}, ""),
            ("announce-all", "announce", gareth, {"text": f"Hear ye {run}", "value": 1}, ""),
            ("spawn", "spawn_monster", gareth, {"x": 156, "y": 64, "value": 1002, "amount": 1}, ""),
            ("gift", "give_item", TALK_NPC, {"char_id": CHAR_ID, "item_id": 501, "amount": 2}, ""),
            ("zeny", "give_zeny", TALK_NPC, {"char_id": CHAR_ID, "value": 150}, ""),
            ("quest", "start_quest", TALK_NPC, {"char_id": CHAR_ID, "value": 1000}, ""),
            (
                "quest-again",
                "start_quest",
                TALK_NPC,
                {"char_id": CHAR_ID, "value": 1000},
                f"character {CHAR_ID} already has quest 1000",
            ),
            ("teleport", "teleport", TALK_NPC, {}, "unknown action kind teleport"),
            ("ghost", "say", ("ghost", "Nobody"), {"text": "boo"}, "no NPC named Nobody#ghost on this server"),
            ("elsewhere", "say", TALK_NPC, {"map": "izlude", "text": "hi"}, "the NPC is on prontera, not izlude"),
            ("wall", "walk_to", TALK_NPC, {"x": 160, "y": 200}, "(160,200) is not a walkable cell of prontera"),
            ("no-shop", "trade", gareth, {"item_id": 519, "value": 44}, "Guard Gareth#gareth_guard has no shop"),
            ("free", "trade", TALK_NPC, {"item_id": 519, "value": 0}, "price must be positive"),
            ("silent", "announce", gareth, {"text": ""}, "nothing to announce"),
            ("grimace", "emote", TALK_NPC, {"value": 200}, "unknown emotion 200"),
            (
                "horde",
                "spawn_monster",
                gareth,
                {"x": 156, "y": 64, "value": 1002, "amount": 50},
                "spawn amount 50 is outside 1..5",
            ),
            (
                "chimera",
                "spawn_monster",
                gareth,
                {"x": 156, "y": 64, "value": 99999, "amount": 1},
                "unknown monster 99999",
            ),
            (
                "offline",
                "give_item",
                TALK_NPC,
                {"char_id": 150999, "item_id": 501, "amount": 1},
                "character 150999 is not online",
            ),
            (
                "no-item",
                "give_item",
                TALK_NPC,
                {"char_id": CHAR_ID, "item_id": 99999999, "amount": 1},
                "unknown item 99999999",
            ),
            (
                "crate",
                "give_item",
                TALK_NPC,
                {"char_id": CHAR_ID, "item_id": 501, "amount": 99},
                "item amount 99 is outside 1..30",
            ),
            ("no-zeny", "give_zeny", TALK_NPC, {"char_id": CHAR_ID, "value": 0}, "zeny amount 0 is out of range"),
            # Weather map flags, one at a time, in this order on Prontera; "clear" leaves it as it was.
            ("snow", "weather", gareth, {"text": "snow"}, ""),
            ("fog", "weather", gareth, {"text": "fog"}, ""),
            ("rain", "weather", gareth, {"text": "rain"}, "unknown weather rain"),
            ("clear", "weather", gareth, {"text": "clear"}, ""),
            ("far-snow", "weather", gareth, {"map": "izlude", "text": "snow"}, "the NPC is on prontera, not izlude"),
        ]
        mark = len(self.player.lines)
        for name, kind, npc, values, _ in cases:
            self._queue(f"check-{run}-{name}", kind, npc, **values)
            if name == "quest":  # the second one must find the first in the quest log
                until(
                    lambda: self.rows(
                        f"SELECT 1 FROM `ai_action` WHERE `action_id` = 'check-{run}-quest' AND `status` = 'done'"
                    ),
                    10,
                    "the first start_quest",
                )
        until(
            lambda: (
                not self.rows(
                    f"SELECT 1 FROM `ai_action` WHERE `action_id` LIKE 'check-{run}-%' AND `status` IN ('queued', 'running')"
                )
            ),
            30,
            "every action finished",
        )
        prefix = f"check-{run}-"
        outcomes = {
            action_id[len(prefix) :]: (status, detail[0] if detail else "")
            for action_id, status, *detail in self.rows(
                f"SELECT `action_id`, `status`, `detail` FROM `ai_action` WHERE `action_id` LIKE '{prefix}%'"
            )
        }
        wrong = []
        for name, kind, _npc, _values, detail in cases:
            expected = ("failed", detail) if detail else ("done", "")
            if outcomes.get(name) != expected:
                wrong.append(f"{name} ({kind}): {outcomes.get(name)} instead of {expected}")
        if wrong:
            raise CheckFailed("the dispatcher's outcomes differ:\n    " + "\n    ".join(wrong))
        done = sum(1 for *_, detail in cases if not detail)
        r.ok(f"{done} actions done ({', '.join(sorted({kind for _, kind, _, _, detail in cases if not detail}))})")
        r.ok(f"{len(cases) - done} refused with the simulator's reasons, e.g. {cases[11][4]!r}")
        self._seen_by_client(run, mark)

    def _seen_by_client(self, run: str, since: int) -> None:
        """What the player sees of it: one speaker name on speech and announcements, the gifts."""
        r = self.report
        said = self._heard("Lina the Baker", f"Fresh bread, {run}!", since)
        announced = self.player.wait_for(rf"Orcs march on the gate {run}", 20, since=since).string
        for line in (said, announced):
            if line.count("Lina the Baker") + line.count("Guard Gareth") != 1:
                raise CheckFailed(f"the speaker's name is not there exactly once: {line!r}")
        r.ok(f"client: {said.strip()!r}")
        r.ok(f"client: {announced.strip()!r}")
        gift = self.player.wait_for(r"Item added to inventory: .*Red Potion", 20, since=since).string
        r.ok(f"client: {gift.strip()!r}")

    def burst(self) -> float:
        r = self.report
        r.step(f"{BURST} actions queued at once: how long until the dispatcher has run them all")
        run = secrets.token_hex(3)
        values = ", ".join(
            f"('burst-{run}-{n}', 'lina_baker', 'Lina the Baker#lina_baker', 'emote', 'prontera', {n % 30})"
            for n in range(BURST)
        )
        started = time.monotonic()
        self.db.run_sql(
            f"INSERT INTO `ai_action` (`action_id`, `npc_id`, `npc_name`, `kind`, `map`, `value`) VALUES {values}"
        )
        until(
            lambda: (
                self.rows(
                    f"SELECT COUNT(*) FROM `ai_action` WHERE `action_id` LIKE 'burst-{run}-%' AND `status` = 'done'"
                )[0][0]
                == str(BURST)
            ),
            30,
            "the burst done",
            interval=0.05,
        )
        elapsed = time.monotonic() - started
        r.ok(f"{BURST} rows done {elapsed:.2f}s after they were queued (1 s ticks, 50 ms budget each)")
        return elapsed

    def late_reply(self) -> None:
        """A reply that comes after the dialogue gave up reaches the player's chat window."""
        r = self.report
        r.step("a late reply: shown in the player's chat by the dispatcher")
        line = f"Sorry I was slow, {CHAR_NAME} ({secrets.token_hex(2)})"
        self.db.run_sql(
            "INSERT INTO `ai_event` (`npc_id`, `kind`, `char_id`, `account_id`, `char_name`, `map`, `x`, `y`, `text`, `created_at`) "
            f"VALUES ('lina_baker', 'talk', {CHAR_ID}, {ACCOUNT_ID}, '{CHAR_NAME}', 'prontera', 148, 184, 'are you there', "
            "NOW() - INTERVAL 30 SECOND);"
            "INSERT INTO `ai_dialogue` (`event_id`, `npc_id`, `char_id`, `reply`) "
            f"VALUES (LAST_INSERT_ID(), 'lina_baker', {CHAR_ID}, '{line}')"
        )
        until(
            lambda: self.rows(f"SELECT 1 FROM `ai_dialogue` WHERE `reply` = '{line}' AND `status` = 'shown'"),
            20,
            "the late reply shown",
        )
        seen = self.player.wait_for(re.escape(line), 20).string
        r.ok(f"status 'shown'; client: {seen.strip()!r}")

    def castle_and_sale_reported(self) -> None:
        """What the char-server writes when a guild takes a castle (`guild_castle`) and what the
        map-server logs of a vending sale (`picklog`, as the seller's loss and the buyer's gain),
        written here as they would, reach politics and the economy through the running bridge, once.
        (Taking a castle in play needs a War of Emperium, a sale two clients: neither is cheap.)"""
        r = self.report
        r.step("a castle changing hands (guild_castle, guild) -> politics; a vending sale (picklog) -> the economy")
        self.db.run_sql(
            "INSERT INTO `guild` (`guild_id`, `name`, `char_id`, `master`) "
            f"VALUES ({CHECK_GUILD_ID}, 'Check Lions', {CHAR_ID}, '{CHAR_NAME}');"
            f"REPLACE INTO `guild_castle` (`castle_id`, `guild_id`) VALUES ({CHECK_CASTLE_ID}, {CHECK_GUILD_ID});"
            "INSERT INTO `picklog` (`time`, `char_id`, `type`, `nameid`, `amount`, `map`) VALUES "
            f"(NOW(), {CHAR_ID}, 'V', 512, -4, 'prontera'), (NOW(), {CHAR_ID}, 'V', 512, 4, 'prontera');"
        )
        [[last_log_row]] = self.rows("SELECT MAX(`id`) FROM `picklog`")
        store = redis.Redis.from_url(self.redis_url or self.settings.redis_url)

        def told(system: str, event: str) -> list[dict[str, Any]]:
            stream = store.xrange(self.keys.world_inbox(system)) or []
            found = [json.loads((fields or {})[b"event"]) for _, fields in stream]
            return [item for item in found if (item.get("facts") or {}).get("event") == event]

        try:
            until(
                lambda: self.rows(
                    f"SELECT 1 FROM `ai_castle_owner` WHERE `castle_id` = {CHECK_CASTLE_ID} "
                    f"AND `guild_id` = {CHECK_GUILD_ID}"
                ),
                60,
                "the bridge seeing the castle's new owner",
            )
            until(
                lambda: self.rows(
                    f"SELECT 1 FROM `ai_bridge_cursor` WHERE `name` = 'picklog' AND `position` >= {last_log_row}"
                ),
                60,
                "the bridge reading the vending sale",
            )
            castles, sales = told("politics", "castle"), told("economy", "vending_sale")
        finally:
            store.close()
        expected_owner = ("prtg_cas01", f"guild_{CHECK_GUILD_ID}", "Check Lions")
        if [(c["facts"]["map"], c["facts"]["owner"], c["facts"].get("owner_name")) for c in castles] != [
            expected_owner
        ]:
            raise CheckFailed(f"politics was told of castles {castles}, expected {expected_owner} once")
        if [(s["facts"]["sold_item"], s["facts"]["sold_amount"]) for s in sales] != [(512, 4)]:
            raise CheckFailed(f"the economy was told of sales {sales}, expected 4 x 512 once (the buyer's row)")
        r.ok(f"politics: {castles[0]['text']!r}; economy: {sales[0]['event_id']} sold 4 x 512")

    def quiet_console(self) -> None:
        """Nothing our scripts did while the game ran made the map-server complain."""
        r = self.report
        r.step("the map-server's console during the run")
        live = _plain_log(self.map_log).splitlines()
        trouble = new_trouble(self.baseline, live)
        if trouble:
            raise CheckFailed("the map-server complained while our NPCs lived:\n    " + "\n    ".join(trouble))
        r.ok(f"{len(live)} lines, no [Error]/[Warning] beyond stock rAthena's own")


def _loaded(lines: list[str]) -> str:
    """map-server's "Done loading N NPCs" summary, which a run that stopped early lacks."""
    for index, line in enumerate(lines):
        if "Done loading" in line:
            return " ".join(part.strip().strip("'") for part in lines[index : index + 6] if part.strip())
    raise CheckFailed(
        "map-server --run-once never finished loading NPCs; its last lines:\n    " + "\n    ".join(lines[-12:])
    )


def _plain_log(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
