"""Online characters near AI NPCs become arrivals and departures, once each, across restarts;
populations and player shop prices become world state."""

from __future__ import annotations

import aiomysql
import httpx

from bridge.api_client import ApiClient
from bridge.service import Bridge
from tests.api.conftest import API_KEYS
from tests.rathena.simulator import Character


async def set_online(slice_, character: Character, online: bool) -> None:
    await slice_.rows(
        "INSERT INTO `char` (char_id, account_id, name, class, base_level, last_map, last_x, last_y, online) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE online = VALUES(online), "
        "last_map = VALUES(last_map), last_x = VALUES(last_x), last_y = VALUES(last_y)",
        character.char_id, character.account_id, character.name, character.job_class, character.base_level,
        character.map, character.x, character.y, int(online),
    )  # fmt: skip


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
    await slice_.rows("CREATE TABLE vending_items (vending_id INT, `index` INT, cartinventory_id INT, amount INT, price INT)")
    await slice_.rows("INSERT INTO cart_inventory VALUES (1, 501), (2, 501), (3, 909)")
    await slice_.rows("INSERT INTO vending_items VALUES (1, 0, 1, 10, 40), (2, 0, 2, 5, 60), (3, 0, 3, 100, 2)")
    await set_online(slice_, Character(char_id=150301, account_id=2000301, name="Vendor", map="prontera", x=1, y=1), True)
    bridge, api, pool = await make_bridge(slice_)
    await bridge.pump_world()
    economy = (await world_state(slice_))["economy"]
    assert economy["price_501"] == "50" and economy["price_909"] == "2"
    await close(api, pool)
