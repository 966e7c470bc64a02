"""`POST /ai/world/event` and the routing of game events to the world systems' inboxes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import redis.asyncio as redis

from aiworld.config import CoordinatorSettings
from aiworld.models import NpcStateView, QueuedAction, TradeAction
from aiworld.npc.offline_policy import OfflineDecisionMaker
from aiworld.ops.worker import build_worker
from aiworld.store.action_queue import ActionQueue
from aiworld.temporal import npc_workflow_id
from aiworld.world.routing import WorldInbox
from api.app import create_app
from tests.api.conftest import API_KEYS, api_settings, open_api
from tests.api.test_npc_endpoints import ARIA, poll
from tests.conftest import end_lives
from tests.processes import redis_process
from workflows.world_broadcast import BroadcastReport

# Demo-world NPCs: Lina and Gareth in Prontera (merchants_guild, prontera_guard), Tess in Izlude.
NPCS = {
    "lina_baker": {"name": "Lina the Baker", "map": "prontera", "x": 146, "y": 182},
    "gareth_guard": {"name": "Guard Gareth", "map": "prontera", "x": 156, "y": 60},
    "tess_fishmonger": {"name": "Tess", "map": "izlude", "x": 148, "y": 162},
}


async def register_all(api) -> None:
    for npc_id, where in NPCS.items():
        answer = await api.post("/ai/npc/register", json={"npc_id": npc_id, "sprite": 90, **where})
        assert answer.status_code == 201, answer.text


async def processed(dev_env, npc_id: str) -> int:
    handle = dev_env.client.get_workflow_handle(npc_workflow_id(npc_id))
    return (await handle.query("state", result_type=NpcStateView)).events_processed


async def test_an_announcement_for_a_map_reaches_its_npcs_once(api, dev_env, redis_client, keys):
    await register_all(api)
    body = {
        "scope": {"kind": "map", "map": "prontera"},
        "event": {"event_id": "fair-1", "kind": "world_event", "text": "The harvest fair opens", "importance": 3},
    }
    answer = await api.post("/ai/world/event", json=body)
    assert answer.status_code == 202, answer.text
    assert answer.json() == {
        "news_id": "fair-1",
        "workflow_id": "broadcast-fair-1",
        "recipients": 2,
        "started": True,
        "routed": ["environment"],
    }
    again = await api.post("/ai/world/event", json=body)  # the bridge retried
    assert again.status_code == 202 and again.json()["recipients"] == 2
    report = await dev_env.client.get_workflow_handle("broadcast-fair-1", result_type=BroadcastReport).result()
    assert report.delivered == 2
    assert await poll(lambda: processed(dev_env, "lina_baker"), lambda count: count == 1)
    assert await poll(lambda: processed(dev_env, "gareth_guard"), lambda count: count == 1)
    assert await processed(dev_env, "tess_fishmonger") == 0
    environment = await WorldInbox(redis_client, keys, CoordinatorSettings()).entries("environment")
    assert [json.loads(entry["event"])["event_id"] for entry in environment] == ["fair-1"]
    assert environment[0]["map"] == "prontera"


async def test_a_kill_in_a_field_reaches_the_npcs_near_it_as_a_kill(api, dev_env, redis_client, keys):
    await register_all(api)
    body = {
        "scope": {"kind": "near", "map": "prontera", "x": 150, "y": 180, "radius": 10},
        "event": {"event_id": "ev-900", "kind": "player_killed_monster", "player": ARIA, "detail": "monster 1002"},
    }
    answer = await api.post("/ai/world/event", json=body)
    assert answer.status_code == 202 and answer.json()["recipients"] == 1
    await dev_env.client.get_workflow_handle("broadcast-ev-900").result()
    assert await poll(lambda: processed(dev_env, "lina_baker"), lambda count: count == 1)
    quests = await WorldInbox(redis_client, keys, CoordinatorSettings()).entries("quests")
    assert [json.loads(entry["event"])["kind"] for entry in quests] == ["player_killed_monster"]


async def test_bad_scopes_and_unknown_places_are_422_naming_the_field(api):
    await register_all(api)
    event = {"event_id": "n-1", "kind": "world_event", "text": "Storm"}
    cases = {
        "scope.radius": {"kind": "near", "map": "prontera", "x": 1, "y": 1, "radius": 999},
        "scope": {"kind": "near", "map": "prontera"},
        "scope.kind": {"kind": "galaxy"},
        "scope.map": {"kind": "map", "map": "nowhere"},
        "scope.faction": {"kind": "faction", "faction": "pirates"},
        "scope.npc_id": {"kind": "npc", "npc_id": "nobody_here"},
    }
    for field, scope in cases.items():
        answer = await api.post("/ai/world/event", json={"scope": scope, "event": event})
        assert answer.status_code == 422, (field, answer.text)
        assert answer.json()["detail"][0]["field"].startswith(field), (field, answer.json())
    colon = await api.post("/ai/world/event", json={"scope": {"kind": "world"}, "event": {**event, "event_id": "a:b"}})
    assert colon.status_code == 422 and colon.json()["detail"][0]["field"] == "event.event_id"
    blank = await api.post("/ai/world/event", json={"scope": {"kind": "world"}, "event": {**event, "text": "\x01\x02"}})
    assert blank.status_code == 422 and blank.json()["detail"][0]["field"] == "event.text"


async def test_game_events_reach_the_world_systems_once_each(api, redis_client, keys):
    await register_all(api)
    inbox = WorldInbox(redis_client, keys, CoordinatorSettings())
    gift = {"event_id": "ev-31", "kind": "item_received", "player": ARIA, "item_id": 512, "amount": 2}
    attack = {"event_id": "ev-32", "kind": "player_attacked", "player": ARIA}
    for _ in range(2):  # every request twice, as a bridge retrying after a lost answer
        assert (await api.post("/ai/npc/event", json={"npc_id": "lina_baker", "event": gift})).status_code == 202
        assert (await api.post("/ai/npc/event", json={"npc_id": "gareth_guard", "event": attack})).status_code == 202
    quests, politics = await inbox.entries("quests"), await inbox.entries("politics")
    assert [(entry["npc_id"], json.loads(entry["event"])["event_id"]) for entry in quests] == [("lina_baker", "ev-31")]
    assert [(entry["npc_id"], entry["faction"]) for entry in politics] == [("gareth_guard", "prontera_guard")]

    # A price change the game made in Lina's shop is news for the economy, once.
    trade = QueuedAction(
        action_id="lina_baker-90-0",
        npc_id="lina_baker",
        sequence=90,
        action=TradeAction(item_id=4000, price=120),
        map="prontera",
        npc_name="Lina the Baker",
        created_at=datetime.now(UTC),
    )
    await ActionQueue(redis_client, keys).enqueue(trade)
    for _ in range(2):
        answer = await api.post("/ai/actions/lina_baker-90-0/result", json={"outcome": "done", "detail": "repriced"})
        assert answer.status_code == 200
    economy = await inbox.entries("economy")
    assert [(entry["npc_id"], entry["map"], entry["faction"]) for entry in economy] == [
        ("lina_baker", "prontera", "merchants_guild")
    ]
    assert json.loads(economy[0]["event"])["action_id"] == "lina_baker-90-0"
    # ... and the shop's price the coherence monitor compares with the economy's is the game's now.
    assert await redis_client.hget(keys.npc("lina_baker"), "shop:4000") in ("120", b"120")
    assert await inbox.entries("environment") == []


async def test_an_event_without_a_scope_reaches_only_the_world_systems_that_take_it(api, redis_client, keys):
    """The bridge's records of the game (a castle's new owner, a player's sale) tell no NPC by
    themselves: they go to the systems whose cycles decide what is news, once per event id."""
    inbox = WorldInbox(redis_client, keys, CoordinatorSettings())
    castle = {
        "event_id": "castle-15-1-g7",
        "kind": "world_event",
        "text": "The Lions took prtg_cas01",
        "facts": {"event": "castle", "map": "prtg_cas01", "owner": "guild_7", "owner_name": "Lions"},
    }
    answers = [(await api.post("/ai/world/event", json={"event": castle})).json() for _ in range(2)]
    assert [(answer["routed"], answer["recipients"], answer["workflow_id"]) for answer in answers] == [
        (["politics"], 0, None),
        ([], 0, None),
    ], "a retried request is routed once"
    [entry] = await inbox.entries("politics")
    assert json.loads(entry["event"])["facts"]["owner"] == "guild_7"
    assert await inbox.entries("environment") == [] and await inbox.entries("economy") == []
    # No system takes an arrival: without a scope it would vanish, so it is refused.
    arrival = {"event_id": "n-2", "kind": "player_nearby", "player": ARIA}
    refused = await api.post("/ai/world/event", json={"event": arrival})
    assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == "scope"


async def test_requests_repeated_after_a_store_outage_reach_npcs_and_world_systems_once(
    dev_env, keys, task_queue, tmp_path
):
    """The state store (a Redis of the test's own) is killed with -9 after a gift was signalled but
    before it was routed, and while news is posted: both are 503, nothing is promised. Sent again
    once it is back (as the bridge does), each reaches its NPC once and its world system once."""
    server = redis_process(tmp_path / "redis")
    server.start()
    store = redis.Redis(port=server.port, decode_responses=True, socket_timeout=2, socket_connect_timeout=2)
    app = create_app(api_settings(keys, task_queue), client=dev_env.client, store=store)
    gift = {"event_id": "ev-51", "kind": "item_received", "player": ARIA, "item_id": 512, "amount": 1}
    fair = {
        "scope": {"kind": "map", "map": "izlude"},
        "event": {"event_id": "fair-2", "kind": "world_event", "text": "Boats are back", "importance": 3},
    }
    try:
        async with build_worker(dev_env.client, task_queue, store, keys, OfflineDecisionMaker()):
            async with app.router.lifespan_context(app), await open_api(app) as http:
                http.headers["X-API-Key"] = API_KEYS[0]
                where = NPCS["tess_fishmonger"]
                registered = await http.post(
                    "/ai/npc/register", json={"npc_id": "tess_fishmonger", "sprite": 90, **where}
                )
                assert registered.status_code == 201
                server.kill()
                gift_answer = await http.post("/ai/npc/event", json={"npc_id": "tess_fishmonger", "event": gift})
                assert gift_answer.status_code == 503 and "state store" in gift_answer.json()["detail"]
                assert (await http.post("/ai/world/event", json=fair)).status_code == 503
                server.start()
                assert (
                    await http.post("/ai/npc/event", json={"npc_id": "tess_fishmonger", "event": gift})
                ).status_code == 202
                again = await http.post("/ai/world/event", json=fair)
                assert again.status_code == 202 and again.json()["recipients"] == 1
                await dev_env.client.get_workflow_handle("broadcast-fair-2").result()
                handle = dev_env.client.get_workflow_handle(npc_workflow_id("tess_fishmonger"))
                settled = await poll(
                    lambda: handle.query("state", result_type=NpcStateView),
                    lambda state: state.events_processed >= 2 and state.pending_events == 0,
                )
                assert settled.events_processed == 2  # the gift signalled twice counts once
                inbox = WorldInbox(store, keys, CoordinatorSettings())
                assert [json.loads(e["event"])["event_id"] for e in await inbox.entries("quests")] == ["ev-51"]
                assert [json.loads(e["event"])["event_id"] for e in await inbox.entries("environment")] == ["fair-2"]
    finally:
        await end_lives(dev_env.client, task_queue, {"npc-tess_fishmonger"}, visibility=False)
        await store.aclose()
        server.stop()
