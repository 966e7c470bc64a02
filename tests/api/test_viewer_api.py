"""The viewer's JSON endpoints on the real dev server and Redis: every NPC of the world, damaged
state skipped rather than a 500, and an NPC card that says why its decisions are missing."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
import redis.asyncio as redis

from aiworld.npc.control import ensure_npc_started
from aiworld.temporal import npc_workflow_id
from aiworld.world.definition import load_world
from api.app import create_app
from api.routes.viewer import _maps
from tests.aiworld.ops.test_demo import Relay
from tests.api.conftest import API_KEYS, api_settings, served
from tests.conftest import demo_profile

pytestmark = pytest.mark.dev_server


async def test_the_world_lists_every_npc_of_the_world_file_even_those_that_never_decided(api):
    world = (await api.get("/ai/viewer/world")).json()
    drawn = {
        npc["npc_id"]: (world_map["name"], npc["x"], npc["y"])
        for world_map in world["maps"]
        for npc in world_map["npcs"]
    }
    expected = {npc.npc_id: (npc.map, npc.x, npc.y) for npc in load_world().npcs}
    assert drawn == expected
    sizes = load_world().maps
    for world_map in world["maps"]:
        for npc in world_map["npcs"]:
            assert world_map["x0"] <= npc["x"] <= world_map["x1"] and world_map["y0"] <= npc["y"] <= world_map["y1"]
        # The demo world's maps at their size in the game (its map cache), cells 0..size-1.
        width, height = sizes[world_map["name"]]
        assert (world_map["x0"], world_map["y0"], world_map["x1"], world_map["y1"]) == (0, 0, width - 1, height - 1)
        assert world_map["sized"]
    assert world["recent"] == [] and world["after"] == "0-0"


async def test_damaged_state_is_skipped_or_replaced_never_a_500(api, redis_client, keys):
    await redis_client.hset(
        keys.npc("lina_baker"), mapping={"map": "prontera", "x": "east", "y": "12", "players_near": "{broken"}
    )
    await redis_client.hset(keys.relationships("lina_baker"), mapping={"player:1": "fond", "player:2": "-40"})
    await redis_client.xadd(keys.world_history("economy"), {"json": "{broken", "price:512": "cheap"})
    await redis_client.xadd(keys.world_history("economy"), {"price:512": "50"})
    # A quest record without its data, and one whose data is not a quest: both listed open.
    await redis_client.hset(keys.quest("q9"), mapping={"status": "offered", "kind": "fetch"})
    await redis_client.hset(keys.quest("q10"), mapping={"status": "offered", "data": json.dumps([1, 2])})
    await redis_client.zadd(keys.open_quests(), {"q9": 1, "q10": 2})
    await redis_client.hset(keys.llm_counter(), mapping={"openai.routine.calls": "many", "openai.dialogue.calls": "2"})

    world = await api.get("/ai/viewer/world")
    assert world.status_code == 200
    lina = next(n for m in world.json()["maps"] for n in m["npcs"] if n["npc_id"] == "lina_baker")
    profile = demo_profile("lina_baker")
    assert (lina["x"], lina["y"], lina["players_near"]) == (profile.x, profile.y, []), "the world file's place"

    card = await api.get("/ai/viewer/npc/lina_baker")
    assert card.status_code == 200 and card.json()["relationships"] == [{"party": "player:2", "score": -40}]

    panels = (await api.get("/ai/viewer/panels")).json()
    assert [point["price"] for point in panels["economy"]["history"]] == [50.0]
    assert panels["quests"] == []  # skipped, never a 500
    assert panels["llm"]["totals"]["calls"] == 2


async def test_an_unknown_npc_has_no_card(api):
    answer = await api.get("/ai/viewer/npc/nobody_here")
    assert answer.status_code == 404 and "nobody_here" in answer.json()["detail"]


async def test_the_card_of_an_npc_without_a_workflow_says_why_its_decisions_are_missing(api):
    card = (await api.get("/ai/viewer/npc/fenwick_scholar")).json()
    assert card["decisions"] == [] and card["decisions_missing"].startswith("its workflow did not answer")
    assert card["name"] == demo_profile("fenwick_scholar").name and card["workflow_id"] == "npc-fenwick_scholar"


async def test_the_card_of_an_npc_whose_worker_does_not_answer_comes_without_decisions_in_time(api, dev_env):
    """An NPC on a task queue no worker polls: its query never gets an answer."""
    profile = demo_profile("fenwick_scholar")
    await ensure_npc_started(dev_env.client, profile, f"nobody-{uuid.uuid4().hex[:8]}")
    try:
        card = (await api.get("/ai/viewer/npc/fenwick_scholar")).json()
    finally:
        await dev_env.client.get_workflow_handle(npc_workflow_id("fenwick_scholar")).terminate("test finished")
    assert card["decisions"] == [] and card["decisions_missing"] == "its worker did not answer in time"
    assert card["memories"] == [] and card["relationships"] == []


async def test_a_store_failure_ends_the_stream_cleanly_and_the_api_stays_up(dev_env, keys, task_queue, caplog):
    """The API reads the store through a relay that goes down while a viewer is connected."""
    relay = await Relay.start()
    store = redis.Redis.from_url(f"redis://127.0.0.1:{relay.port}/0", decode_responses=True)
    app = create_app(api_settings(keys, task_queue), client=dev_env.client, store=store)
    try:
        async with served(app) as url:
            async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": API_KEYS[0]}, timeout=60) as http:
                async with http.stream("GET", "/ai/viewer/stream") as stream:
                    lines = stream.aiter_lines()
                    assert (await anext(lines)).startswith("retry:")
                    await relay.stop()
                    rest = [line async for line in lines]  # the stream ends: the page reconnects
                assert ": the state store is unavailable; reconnect" in rest
                assert (await http.get("/health")).status_code == 200
    finally:
        await store.aclose()
        await relay.stop()
    assert "viewer stream ended: the state store failed" in caplog.text


def test_a_map_the_world_file_gives_no_size_is_drawn_around_what_lives_on_it():
    lina = demo_profile("lina_baker")
    npc = {"npc_id": lina.npc_id, "map": "payon", "x": 100, "y": 120}
    assert lina.area is not None
    (drawn,) = _maps([npc], {lina.npc_id: lina}, sizes={"prontera": (312, 392)})
    # Lina's area is on prontera, not here: the map spans her cell with the margin.
    assert (drawn["name"], drawn["sized"]) == ("payon", False)
    assert (drawn["x0"], drawn["x1"], drawn["y0"], drawn["y1"]) == (90, 110, 110, 130)
