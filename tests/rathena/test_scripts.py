"""The NPC scripts and the SQL they run: static checks, and the dispatcher's once-only execution."""

from __future__ import annotations

import ast
import inspect
import re

import aiomysql
import pytest_asyncio

from aiworld.world.definition import load_world
from bridge import translate
from tests.rathena.simulator import (
    ACTION_BATCH,
    SCRIPTS,
    STATEMENTS,
    Character,
    ScriptSimulator,
    install_game_tables,
    script_npcs,
    script_routines,
)

SCRIPT_TEXT = {path.name: path.read_text(encoding="utf-8") for path in SCRIPTS.glob("*.txt")}
# Variables the scripts set to constants themselves ('done', 'failed', 'shown', 'late'), never player text.
SCRIPT_CONSTANTS = {".@outcome$", ".@status$"}


def sprintf_args(line: str) -> list[str]:
    """The arguments of the line's sprintf(...) call, split at its own top-level commas."""
    depth, current, args, quoted = 0, "", [], False
    for char in line[line.index("sprintf(") + len("sprintf(") :]:
        if char == '"' and not current.endswith("\\"):
            quoted = not quoted
        if not quoted and char == "(":
            depth += 1
        if not quoted and char == ")":
            if depth == 0:
                break
            depth -= 1
        if char == "," and depth == 0 and not quoted:
            args.append(current.strip())
            current = ""
        else:
            current += char
    args.append(current.strip())
    return args


def test_every_query_is_tagged_and_read_by_the_simulator():
    for name, text in SCRIPT_TEXT.items():
        lines = text.splitlines()
        for number, line in enumerate(lines):
            if "query_sql(" in line:
                assert re.search(r"//\s*sql:\w+", lines[number - 1]), f"{name}:{number + 1} has an untagged query"
    assert {"select_actions", "mark_running", "finish_action", "insert_talk", "select_reply", "insert_register"} <= set(
        STATEMENTS
    )


def test_text_reaches_sql_only_through_escape_sql():
    for name, text in SCRIPT_TEXT.items():
        for number, line in enumerate(text.splitlines()):
            if "sprintf(" not in line or "query_sql(" not in line:
                continue
            for arg in sprintf_args(line)[1:]:
                textual = "$" in arg or "strcharinfo" in arg or "strnpcinfo" in arg
                if textual and arg not in SCRIPT_CONSTANTS:
                    assert arg.startswith("escape_sql("), f"{name}:{number + 1}: {arg} goes into SQL unescaped"


def test_scripts_have_balanced_braces_and_quotes():
    for name, text in SCRIPT_TEXT.items():
        code = "\n".join(line.split("//", 1)[0] if '"' not in line else line for line in text.splitlines())
        assert code.count("{") == code.count("}"), name
        for number, line in enumerate(text.splitlines()):
            assert line.replace('\\"', "").count('"') % 2 == 0, f"{name}:{number + 1} has an unbalanced quote"


def test_no_script_counts_with_what_explode_returns():
    # On the server `explode` returns nothing: `.@n = explode(...)` is 0, and a loop over it never runs.
    for name, text in SCRIPT_TEXT.items():
        for number, line in enumerate(text.splitlines()):
            assert not re.search(r"=\s*explode\(", line), f"{name}:{number + 1}: count with getarraysize instead"


def _template(parts: list[tuple[bool, str]]) -> str:
    """Literal text with every computed part as {}: comparable between the script and the simulator."""
    return re.sub(r"(\{\})+", "{}", "".join(text if literal else "{}" for literal, text in parts))


def script_refusals() -> set[str]:
    """The reasons S_Execute returns (`return "…" + .@x + "…";`) as templates."""
    refusals = set()
    for line in SCRIPT_TEXT["ai_world.txt"].splitlines():
        found = re.match(r'\s*return (".*);$', line)
        if found:
            pieces = re.findall(r'"((?:[^"\\]|\\.)*)"|([^+"\s][^+"]*?)\s*(?=\+|$)', found.group(1))
            refusals.add(
                _template([(bool(literal), literal) if literal else (False, code) for literal, code in pieces])
            )
    return refusals


def simulator_refusals() -> set[str]:
    tree = ast.parse(inspect.getsource(ScriptSimulator._execute).strip())
    return {
        _template(
            [
                (isinstance(part, ast.Constant), part.value if isinstance(part, ast.Constant) else "")
                for part in node.value.values
            ]
        )
        for node in ast.walk(tree)
        if isinstance(node, ast.Return) and isinstance(node.value, ast.JoinedStr)
    }


def test_every_refusal_the_simulator_claims_is_the_scripts():
    claimed = simulator_refusals()
    assert "character {} already has quest {}" in claimed
    assert claimed <= script_refusals(), claimed - script_refusals()


def test_demo_npcs_in_the_game_match_the_world_file():
    world = {npc.npc_id: npc for npc in load_world().npcs}
    placed = script_npcs()
    routines = script_routines()
    assert len(placed) >= 5
    assert len({npc.unique_name for npc in placed}) == len(placed)
    for npc in placed:
        profile = world[npc.npc_id]
        assert (npc.name, npc.map, npc.x, npc.y, npc.sprite) == (
            profile.name,
            profile.map,
            profile.x,
            profile.y,
            profile.sprite,
        )
        # The stops registration checks against the map are the ones the service walks the NPC to.
        assert routines.get(npc.npc_id, []) == [tuple(stop) for stop in profile.routine], npc.npc_id
        shop = re.search(rf"^-\tshop\taiw_shop_{npc.npc_id}\t-1,(.+)$", SCRIPT_TEXT["ai_world_npcs.txt"], re.M)
        expected = {(item.item_id, item.base_price) for item in profile.shop}
        found = {tuple(map(int, pair.split(":"))) for pair in shop.group(1).split(",")} if shop else set()
        assert found == expected, npc.npc_id


@pytest_asyncio.fixture(loop_scope="session")
async def game(mariadb):
    await install_game_tables(mariadb)
    return ScriptSimulator(mariadb)


async def insert_action(db: dict, action_id: str, kind: str, npc: str = "lina_baker", **values) -> None:
    connection = await aiomysql.connect(**db, autocommit=True)
    unique = {"lina_baker": "Lina the Baker#lina_baker", "gareth_guard": "Guard Gareth#gareth_guard"}.get(
        npc, f"X#{npc}"
    )
    row = {"x": 0, "y": 0, "char_id": 0, "item_id": 0, "amount": 0, "value": 0, "text": "", "map": "prontera", **values}
    async with connection.cursor() as cursor:
        await cursor.execute(
            "INSERT INTO ai_action (action_id, npc_id, npc_name, kind, map, x, y, char_id, item_id, amount, value, text) "
            "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            (
                action_id,
                npc,
                unique,
                kind,
                row["map"],
                row["x"],
                row["y"],
                row["char_id"],
                row["item_id"],
                row["amount"],
                row["value"],
                row["text"],
            ),
        )
    connection.close()


async def test_the_dispatcher_runs_each_action_once_and_fails_bad_ones(game, mariadb):
    await insert_action(mariadb, "a-say", "say", text="Fresh bread!")
    await insert_action(mariadb, "a-teleport", "teleport")
    await insert_action(mariadb, "a-spawn", "spawn_monster", npc="gareth_guard", amount=50, value=1002)
    await insert_action(mariadb, "a-ghost", "say", npc="ghost", text="boo")
    await insert_action(mariadb, "a-gift", "give_item", char_id=150001, item_id=501, amount=1)
    first = await game.dispatcher_tick()
    outcomes = {row["kind"] + ":" + row["npc"]: (row["outcome"], row["error"]) for row in first}
    assert outcomes["say:Lina the Baker#lina_baker"] == ("done", "")
    assert outcomes["teleport:Lina the Baker#lina_baker"] == ("failed", "unknown action kind teleport")
    assert outcomes["spawn_monster:Guard Gareth#gareth_guard"][1] == "spawn amount 50 is outside 1..5"
    assert "no NPC named" in outcomes["say:X#ghost"][1]
    assert outcomes["give_item:Lina the Baker#lina_baker"][1] == "character 150001 is not online"
    assert await game.dispatcher_tick() == [], "a second tick executes nothing again"


async def test_weather_sets_one_map_flag_and_refuses_what_the_game_cannot_show(game, mariadb):
    await insert_action(mariadb, "w-snow", "weather", text="snow")
    await insert_action(mariadb, "w-rain", "weather", text="rain")
    await insert_action(mariadb, "w-away", "weather", text="fog", map="izlude")
    outcomes = {row["text"]: (row["outcome"], row["error"]) for row in await game.dispatcher_tick()}
    assert outcomes == {
        "snow": ("done", ""),
        "rain": ("failed", "unknown weather rain"),
        "fog": ("failed", "the NPC is on prontera, not izlude"),
    }
    assert game.weather == {"prontera": "snow"}
    await insert_action(mariadb, "w-clear", "weather", text="clear")
    assert [row["outcome"] for row in await game.dispatcher_tick()] == ["done"]
    assert game.weather == {"prontera": "clear"}


async def test_a_burst_of_actions_runs_in_one_tick_while_its_budget_lasts(game, mariadb):
    for number in range(ACTION_BATCH * 2 + 5):
        await insert_action(mariadb, f"burst-{number}", "emote", value=1)
    assert len(await game.dispatcher_tick(budget_seconds=0)) == ACTION_BATCH, (
        "out of time: one batch, the rest next tick"
    )
    assert len(await game.dispatcher_tick(budget_seconds=60)) == ACTION_BATCH + 5, (
        "full batches follow while time is left"
    )


async def test_a_quest_the_character_has_is_refused_with_a_reason(game, mariadb):
    await game.log_in(Character(char_id=150002, account_id=2000002, name="Bo"))
    await insert_action(mariadb, "q-first", "start_quest", char_id=150002, value=1000)
    await insert_action(mariadb, "q-again", "start_quest", char_id=150002, value=1000)
    outcomes = [(row["outcome"], row["error"]) for row in await game.dispatcher_tick()]
    assert outcomes == [("done", ""), ("failed", "character 150002 already has quest 1000")]


async def test_registration_and_dialogue_rows(game, mariadb):
    await game.register_all()
    aria = Character(char_id=150001, account_id=2000001, name="Aria")
    event_id = await game.player_talks("lina_baker", aria, "Hello! " + "é" * 60)
    connection = await aiomysql.connect(**mariadb, autocommit=True)
    async with connection.cursor() as cursor:
        await cursor.execute("SELECT COUNT(*) FROM ai_event WHERE kind = 'register'")
        assert (await cursor.fetchone())[0] == len(script_npcs())
        await cursor.execute("SELECT text FROM ai_event WHERE id = %s", (event_id,))
        assert len((await cursor.fetchone())[0].encode()) <= 70  # cut like the client's input box
        await cursor.execute(
            "INSERT INTO ai_dialogue (event_id, npc_id, char_id, reply, options) VALUES (%s, 'lina_baker', 150001, 'Hi Aria', 'Buy:Bye:goodbye')",
            (event_id,),
        )
    connection.close()
    menu = ["Buy", "Bye", "Say something else", "Goodbye"]  # her own "goodbye" would show twice
    shown = {"reply": "Hi Aria", "emotion": -1, "options": ["Buy", "Bye", "goodbye"], "menu": menu}
    assert await game.wait_reply(event_id) == shown | {"status": "ready"}
    reply = await game.wait_reply(event_id, polls=1)
    assert reply == shown | {"status": "shown"}
    # Picking "Buy" is Aria's next line; "Goodbye" sends nothing.
    next_event = await game.player_picks("lina_baker", aria, reply, 1)
    assert await game.player_picks("lina_baker", aria, reply, 4) is None
    connection = await aiomysql.connect(**mariadb, autocommit=True)
    async with connection.cursor() as cursor:
        await cursor.execute("SELECT kind, npc_id, char_id, text FROM ai_event WHERE id > %s", (event_id,))
        assert await cursor.fetchall() == (("talk", "lina_baker", 150001, "Buy"),)
    connection.close()
    assert next_event > event_id


async def test_registration_reports_the_cells_the_map_refuses(game, mariadb):
    """A spot or routine stop checkcell refuses travels in the register row to the API's registration."""
    tomas = game.npcs["old_tomas"]
    stop = script_routines()["old_tomas"][1]
    game.unwalkable = {(tomas.map, tomas.x, tomas.y), (tomas.map, *stop)}
    await game.register_all()
    connection = await aiomysql.connect(**mariadb, autocommit=True)
    async with connection.cursor(aiomysql.DictCursor) as cursor:
        await cursor.execute("SELECT id, npc_id, map, x, y, detail, text FROM ai_event WHERE kind = 'register'")
        rows = {row["npc_id"]: row for row in await cursor.fetchall()}
    connection.close()
    body = translate.registration_body(translate.registration_of(rows["old_tomas"]))
    assert body["unwalkable"] == [[tomas.x, tomas.y], list(stop)]  # the spot, once, though it is also a stop
    assert "unwalkable" not in translate.registration_body(translate.registration_of(rows["lina_baker"]))
