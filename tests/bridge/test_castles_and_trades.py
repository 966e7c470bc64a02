"""rAthena's own tables reach the world systems: castles changing hands (`guild_castle`, `guild`)
go to politics, players' vending sales (`picklog`) to the economy — each once, across restarts."""

from __future__ import annotations

import json

from aiworld.config import BridgeSettings, CoordinatorSettings
from aiworld.world import economy, politics
from aiworld.world.cycle import InboxEntry
from aiworld.world.routing import WorldInbox
from aiworld.world.store import WorldStore
from bridge.api_client import ApiClient
from bridge.service import BridgeOptions
from tests.aiworld.world.test_models import merchant
from tests.api.conftest import API_KEYS
from tests.bridge.test_world_sync import close, make_bridge

# The columns the bridge reads, as rAthena's sql-files/main.sql and logs.sql name them.
GUILD_TABLES = (
    "CREATE TABLE `guild` (`guild_id` INT UNSIGNED NOT NULL PRIMARY KEY, `name` VARCHAR(24) NOT NULL DEFAULT '')",
    "CREATE TABLE `guild_castle` (`castle_id` INT UNSIGNED NOT NULL PRIMARY KEY, "
    "`guild_id` INT UNSIGNED NOT NULL DEFAULT 0, `economy` INT UNSIGNED NOT NULL DEFAULT 0)",
)
PICKLOG_TABLE = (
    "CREATE TABLE `picklog` (`id` INT NOT NULL AUTO_INCREMENT PRIMARY KEY, `time` DATETIME NOT NULL, "
    "`char_id` INT NOT NULL DEFAULT 0, `type` ENUM('M','P','L','T','V','S','N') NOT NULL DEFAULT 'P', "
    "`nameid` INT UNSIGNED NOT NULL DEFAULT 0, `amount` INT NOT NULL DEFAULT 1, `map` VARCHAR(11) NOT NULL DEFAULT '')"
)
KRIEMHILD, SWANHILD = 15, 16  # prtg_cas01, prtg_cas02 in rAthena's castle_db


def inbox_of(redis_client, keys) -> WorldInbox:
    return WorldInbox(redis_client, keys, CoordinatorSettings())


async def cycle_reads(redis_client, keys, system: str) -> list[InboxEntry]:
    """The inbox as the system's next cycle reads it."""
    entries, _, refused = await WorldStore(redis_client, keys).inbox(system, "", 100)
    assert refused == 0
    return entries


async def owners_told(redis_client, keys) -> list[tuple[str, str]]:
    entries = await inbox_of(redis_client, keys).entries("politics")
    return [(facts["map"], facts["owner"]) for facts in (json.loads(e["event"])["facts"] for e in entries)]


async def test_a_castle_changing_hands_reaches_politics_once(slice_, redis_client, keys):
    for statement in GUILD_TABLES:
        await slice_.rows(statement)
    await slice_.rows("INSERT INTO `guild` VALUES (7, 'Lions'), (8, 'Wolves')")
    # Kriemhild held, Swanhild free, and a castle of the server's own that the bridge has no map for.
    await slice_.rows("INSERT INTO `guild_castle` (castle_id, guild_id) VALUES (15, 7), (16, 0), (77, 8)")
    bridge, api, pool = await make_bridge(slice_)
    try:
        assert await bridge.pump_world() == 1
        assert await bridge.pump_world() == 0, "an unchanged owner is not posted again"
        assert await owners_told(redis_client, keys) == [("prtg_cas01", "guild_7")]
        assert bridge.stats.refused == {"castles": 1}, "the unknown castle is skipped, counted once"
        [entry] = await inbox_of(redis_client, keys).entries("politics")
        assert json.loads(entry["event"])["facts"]["owner_name"] == "Lions"

        # A crash after the post, before the bridge wrote what it saw: the same post again, routed once.
        await slice_.rows("DELETE FROM `ai_castle_owner`")
        assert await bridge.pump_world() == 1
        assert await owners_told(redis_client, keys) == [("prtg_cas01", "guild_7")]
    finally:
        await close(api, pool)

    # A restarted bridge remembers; the Wolves take Kriemhild, the Lions take it back, then break up.
    bridge, api, pool = await make_bridge(slice_)
    try:
        assert await bridge.pump_world() == 0
        await slice_.rows("UPDATE `guild_castle` SET guild_id = 8 WHERE castle_id = %s", KRIEMHILD)
        assert await bridge.pump_world() == 1
        await slice_.rows("UPDATE `guild_castle` SET guild_id = 7 WHERE castle_id = %s", KRIEMHILD)
        await slice_.rows("UPDATE `guild_castle` SET guild_id = 7 WHERE castle_id = %s", SWANHILD)
        assert await bridge.pump_world() == 2
        await slice_.rows("DELETE FROM `guild_castle` WHERE guild_id = 7")  # what rAthena does to a broken guild
        assert await bridge.pump_world() == 2
        assert await bridge.pump_world() == 0
        assert await owners_told(redis_client, keys) == [
            ("prtg_cas01", "guild_7"),
            ("prtg_cas01", "guild_8"),
            ("prtg_cas01", "guild_7"),  # taken back: a new change, not a repeat
            ("prtg_cas02", "guild_7"),
            ("prtg_cas01", "none"),
            ("prtg_cas02", "none"),
        ]
        assert bridge.stats.refused == {"castles": 1}
    finally:
        await close(api, pool)

    # Politics makes territory of it: both castles held, then free.
    state: dict[str, str] = {}
    for entry in await cycle_reads(redis_client, keys, "politics"):
        step = politics.politics_step(state, [entry], {})
        state = {**{k: v for k, v in state.items() if k not in step.deleted}, **step.fields}
        if entry.event.event_id == "castle-16-1-g7":
            assert state["territory:prtg_cas01"] == state["territory:prtg_cas02"] == "guild_7"
    assert not any(key.startswith("territory:") for key in state)


async def test_an_operators_own_castle_is_reported_once_mapped(slice_, redis_client, keys):
    for statement in GUILD_TABLES:
        await slice_.rows(statement)
    await slice_.rows("INSERT INTO `guild_castle` (castle_id, guild_id) VALUES (77, 8)")  # no guild row: no name
    bridge, api, pool = await make_bridge(slice_)
    bridge.options = BridgeOptions.of(BridgeSettings(castle_maps={77: "my_cas01"}))
    try:
        assert await bridge.pump_world() == 1 and bridge.stats.refused == {}
        [entry] = await inbox_of(redis_client, keys).entries("politics")
        event = json.loads(entry["event"])
        assert event["facts"] == {
            "event": "castle",
            "map": "my_cas01",
            "owner": "guild_8",
            "castle_id": 77,
            "owner_name": "guild_8",
        }
    finally:
        await close(api, pool)


async def test_players_vending_sales_reach_the_economy_once(slice_, redis_client, keys):
    await slice_.rows(PICKLOG_TABLE)
    # One sale logged as rAthena does (the seller's cart loses 3, the buyer gains 3), a drop, a
    # second sale, and a row no sale can be (some tool wrote an item id 0).
    await slice_.rows(
        "INSERT INTO `picklog` (`time`, `char_id`, `type`, `nameid`, `amount`, `map`) VALUES "
        "(NOW(), 150001, 'V', 507, -3, 'prontera'), (NOW(), 150002, 'V', 507, 3, 'prontera'), "
        "(NOW(), 150002, 'M', 909, 1, 'prt_fild08'), (NOW(), 150003, 'V', 0, 2, 'prontera'), "
        "(NOW(), 150004, 'V', 909, 12, 'prontera'), (NOW(), 150004, 'P', 909, 1, 'prontera')"
    )
    bridge, api, pool = await make_bridge(slice_)
    # Named with its database, as when rAthena's logs have one of their own (`log_db_db`).
    bridge.options = BridgeOptions.of(BridgeSettings(picklog_table=f"{slice_.db['db']}.picklog"))
    try:
        assert await bridge.pump_trades() == 3
        assert await bridge.pump_trades() == 0
        assert bridge.stats.refused == {"trades": 1}
        assert await slice_.rows("SELECT `position` FROM `ai_bridge_cursor` WHERE `name` = 'picklog'") == [(6,)], (
            "the cursor passes the rows that are no sale"
        )
        # A crash before the cursor moved: the same rows again, routed once.
        await slice_.rows("DELETE FROM `ai_bridge_cursor` WHERE `name` = 'picklog'")
        assert await bridge.pump_trades() == 3
    finally:
        await close(api, pool)
    entries = await inbox_of(redis_client, keys).entries("economy")
    sales = [json.loads(entry["event"]) for entry in entries]
    assert [(sale["event_id"], sale["facts"]["sold_item"], sale["facts"]["sold_amount"]) for sale in sales] == [
        ("vend-2", 507, 3),
        ("vend-5", 909, 12),
    ]
    assert await inbox_of(redis_client, keys).entries("environment") == [], "sales are no news for the weather"

    # The economy counts them: demand for the herb a merchant sells rises, the volume counts both.
    step = economy.economy_step({}, await cycle_reads(redis_client, keys, "economy"), [merchant()])
    assert int(step.fields["demand:507"]) > economy.NORMAL and step.fields["trade_volume"] == "15"


async def test_a_server_without_guild_or_log_tables_is_no_fault(slice_):
    bridge, api, pool = await make_bridge(slice_)
    try:
        assert await bridge.pump_world() == 0 and await bridge.pump_trades() == 0
        assert bridge.stats.refused == {}
    finally:
        await close(api, pool)


async def test_what_the_api_refuses_for_good_is_counted_and_skipped(slice_, redis_client, keys):
    """An API that answers these posts with a 4xx (here: a URL where no such route is) refuses the
    data for good: each change and sale is counted and skipped, not posted again every pump."""
    for statement in (*GUILD_TABLES, PICKLOG_TABLE):
        await slice_.rows(statement)
    await slice_.rows("INSERT INTO `guild_castle` (castle_id, guild_id) VALUES (15, 7)")
    await slice_.rows(
        "INSERT INTO `picklog` (`time`, `type`, `nameid`, `amount`) VALUES (NOW(), 'V', 507, 2), (NOW(), 'V', 508, 1)"
    )
    bridge, api, pool = await make_bridge(slice_)
    bridge.api = ApiClient(f"{slice_.api_url}/no-such-version", API_KEYS[0])
    try:
        assert await bridge.pump_world() == 1 and await bridge.pump_world() == 0
        assert await bridge.pump_trades() == 2 and await bridge.pump_trades() == 0
        # (and the world state of each pump: the players online, 0 of them)
        assert bridge.stats.refused == {"castles": 1, "trades": 2, "world": 2}
        assert await inbox_of(redis_client, keys).entries("politics") == []
        assert await inbox_of(redis_client, keys).entries("economy") == []
    finally:
        await bridge.api.aclose()
        await close(api, pool)
