"""Online characters near AI NPCs become arrivals and departures, once each, across restarts;
populations and player shop prices become world state."""

from __future__ import annotations

import asyncio

import aiomysql
import httpx

from bridge.api_client import ApiClient
from bridge.service import Bridge, BridgeOptions
from tests.api.conftest import API_KEYS
from tests.rathena.simulator import Character


async def set_online(slice_, character: Character, online: bool) -> None:
    await slice_.rows(
        "INSERT INTO `char` (char_id, account_id, name, class, base_level, last_map, last_x, last_y, online) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE online = VALUES(online), "
        "last_map = VALUES(last_map), last_x = VALUES(last_x), last_y = VALUES(last_y)",
        character.char_id,
        character.account_id,
        character.name,
        character.job_class,
        character.base_level,
        character.map,
        character.x,
        character.y,
        int(online),
    )


async def world_state(slice_) -> dict:
    async with httpx.AsyncClient(base_url=slice_.api_url, headers={"X-API-Key": API_KEYS[0]}) as http:
        return (await http.get("/ai/world/state")).json()


async def make_bridge(slice_) -> tuple[Bridge, ApiClient, aiomysql.Pool]:
    pool = await aiomysql.create_pool(**slice_.db, autocommit=True, minsize=1, maxsize=2)
    api = ApiClient(slice_.api_url, API_KEYS[0])
    bridge = Bridge(pool, api)
    await bridge.load_known_npcs()
    return bridge, api, pool


async def close(api: ApiClient, pool: aiomysql.Pool) -> None:
    await api.aclose()
    pool.close()
    await pool.wait_closed()


async def test_presence_follows_the_char_table_once_across_restarts(slice_, dev_env):
    await slice_.game.register_all()
    bridge, api, pool = await make_bridge(slice_)
    while await bridge.pump_events():  # registrations: the NPCs start living
        pass
    near_lina = Character(char_id=150201, account_id=2000201, name="Aria", map="prontera", x=148, y=184)
    far_away = Character(char_id=150202, account_id=2000202, name="Borin", map="prontera", x=20, y=20)
    await set_online(slice_, near_lina, True)
    await set_online(slice_, far_away, True)
    assert await bridge.pump_world() == 1
    await close(api, pool)

    # A restarted bridge remembers who is near: no second arrival.
    bridge, api, pool = await make_bridge(slice_)
    assert await bridge.pump_world() == 0
    await set_online(slice_, near_lina, False)
    assert await bridge.pump_world() == 1  # the departure
    assert await bridge.pump_world() == 0

    lina = dev_env.client.get_workflow_handle("npc-lina_baker")

    async def told_twice():
        state = await lina.query("state")
        return state["events_processed"] == 2 and not state["players_near"]

    await slice_.until(told_twice)
    world = await world_state(slice_)
    assert world["environment"]["population_prontera"] == "1"  # Borin is still online
    await close(api, pool)


async def test_player_shop_prices_feed_the_economy(slice_):
    await slice_.rows("CREATE TABLE cart_inventory (id INT PRIMARY KEY, nameid INT)")
    await slice_.rows(
        "CREATE TABLE vending_items (vending_id INT, `index` INT, cartinventory_id INT, amount INT, price INT)"
    )
    await slice_.rows("INSERT INTO cart_inventory VALUES (1, 501), (2, 501), (3, 909)")
    await slice_.rows("INSERT INTO vending_items VALUES (1, 0, 1, 10, 40), (2, 0, 2, 5, 60), (3, 0, 3, 100, 2)")
    await set_online(
        slice_, Character(char_id=150301, account_id=2000301, name="Vendor", map="prontera", x=1, y=1), True
    )
    bridge, api, pool = await make_bridge(slice_)
    await bridge.pump_world()
    economy = (await world_state(slice_))["economy"]
    assert economy["price_501"] == "50" and economy["price_909"] == "2"
    await close(api, pool)


# 85 maps as a real server has them populated: towns, fields, dungeons, the novice grounds of
# pre-renewal (`new_1-1`: map names with `-`) and instances (`1@tower`: map names with `@`).
REAL_MAPS = (
    ["prontera", "morocc", "geffen", "payon", "alberta", "izlude", "aldebaran"]
    + [f"prt_fild{n:02}" for n in range(12)]
    + [f"moc_fild{n:02}" for n in range(1, 20)]
    + [f"gef_fild{n:02}" for n in range(15)]
    + [f"pay_fild{n:02}" for n in range(1, 12)]
    + [f"mjolnir_{n:02}" for n in range(1, 13)]
    + ["new_1-1", "new_1-2", "new_2-1", "new_3-1", "1@tower", "2@tower", "1@cata", "2@cata", "1@orcs"]
)
# Lina the Baker stands near (148,184) in prontera, and no other NPC.
NEAR_LINA = [(150301, "Near One"), (150302, "Near Two")]
UNUSABLE_NEAR_LINA = (150303, "A name too long for a char")  # written by some other tool
NOVICES = 25


async def fill_char_table(slice_, count: int) -> None:
    """`count` players spread over REAL_MAPS, in the west (x < 70) where no NPC stands; NOVICES new
    characters on their start map; three players near Lina."""
    rows = [
        (
            160000 + n,
            2100000 + n,
            f"Player{n}",
            n % 30,
            1 + n % 99,
            REAL_MAPS[n % len(REAL_MAPS)],
            20 + n % 50,
            20 + n % 150,
            1,
        )
        for n in range(count)
    ]
    rows += [(170000 + n, 2200000 + n, f"Novice{n}", 0, 1, "new_1-1", 53, 111, 1) for n in range(NOVICES)]
    rows += [
        (char_id, char_id + 1000000, name, 0, 50, "prontera", 148, 184, 1)
        for char_id, name in [*NEAR_LINA, UNUSABLE_NEAR_LINA]
    ]
    connection = await aiomysql.connect(**slice_.db, autocommit=True)
    try:
        async with connection.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO `char` (char_id, account_id, name, class, base_level, last_map, last_x, last_y, online) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                rows,
            )
    finally:
        connection.close()


async def test_a_real_servers_char_table_is_synced_and_what_cannot_be_is_skipped(slice_):
    assert len(REAL_MAPS) == 85
    await slice_.game.register_all()
    await fill_char_table(slice_, 420)
    bridge, api, pool = await make_bridge(slice_)
    try:
        while await bridge.pump_events():
            pass
        assert await bridge.pump_world() == len(NEAR_LINA), (
            "the two players near Lina arrive; the unusable one is skipped"
        )
        assert bridge.stats.refused == {"world": 1}
        environment = (await world_state(slice_))["environment"]
        assert environment["players_online"] == str(420 + NOVICES + 3)
        on_instances = sum(1 for n in range(420) if "@tower" in REAL_MAPS[n % 85])
        assert environment["population_instance_tower"] == str(on_instances)
        assert int(environment["population_new_1_1"]) == NOVICES + sum(
            1 for n in range(420) if REAL_MAPS[n % 85] == "new_1-1"
        )
        assert 30 <= sum(key.startswith("population_") for key in environment) < 50, "the busiest maps, not all 85"

        assert await bridge.pump_world() == 0
        assert bridge.stats.refused == {"world": 1}, "a bad row is reported once, not every few seconds"
        await slice_.rows("UPDATE `char` SET online = 0 WHERE last_map = 'new_1-1'")
        await bridge.pump_world()
        assert (await world_state(slice_))["environment"]["population_new_1_1"] == "0", (
            "an emptied map does not keep its count"
        )
    finally:
        await close(api, pool)


async def test_no_pump_dies_while_the_api_refuses_the_bridge(slice_):
    """An operator rotated the API keys and forgot the bridge: every call is refused (401). The
    pumps keep going, counting it as an outage, skip no row, and pick up once the key is right."""
    await slice_.game.register_all()
    await fill_char_table(slice_, 120)
    bridge, api, pool = await make_bridge(slice_)
    bridge.api = ApiClient(slice_.api_url, "a-revoked-key")
    bridge.options = BridgeOptions(poll_seconds=0.1, world_seconds=0.2)
    stop = asyncio.Event()
    running = asyncio.create_task(bridge.run(stop))
    try:
        await slice_.until(
            lambda: _true(all(bridge.stats.outages[pump] >= 2 for pump in ("events", "actions", "world")))
        )
        assert not running.done()
        assert await slice_.rows("SELECT * FROM ai_event_rejected") == [], "the key was refused, not the rows"
        await bridge.api.aclose()
        bridge.api = api
        await slice_.until(lambda: _world_has("players_online", slice_))
        await slice_.until(lambda: _npc_started("lina_baker", slice_))  # the registrations went through
    finally:
        stop.set()
        await running
        await close(api, pool)
    assert not bridge.stats.failures and bridge.stats.refused == {"world": 1}  # only the unusable character


async def _true(value: bool) -> bool:
    return value


async def _world_has(key: str, slice_) -> bool:
    return key in (await world_state(slice_))["environment"]


async def _npc_started(npc_id: str, slice_) -> bool:
    async with httpx.AsyncClient(base_url=slice_.api_url, headers={"X-API-Key": API_KEYS[0]}) as http:
        return (await http.get(f"/ai/npc/{npc_id}")).status_code == 200
