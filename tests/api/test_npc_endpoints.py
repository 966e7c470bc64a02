"""The NPC endpoints end to end: registration, events, dialogue (paused, late), actions, results."""

from __future__ import annotations

import asyncio
import subprocess

import pytest_asyncio

from aiworld.models import DialogueContext
from aiworld.npc.offline_policy import OfflineDecisionMaker
from aiworld.ops import binaries
from aiworld.ops.worker import build_worker
from api.app import create_app
from tests.api.conftest import API_KEYS, api_settings, open_api
from tests.conftest import end_lives

ARIA = {"char_id": 150001, "name": "Aria", "level": 34, "job_class": 4, "map": "prontera", "x": 146, "y": 180}
LINA = {"npc_id": "lina_baker", "name": "Lina the Baker", "sprite": 90, "map": "prontera", "x": 146, "y": 182}


async def poll(fetch, accept, timeout=30.0):
    async with asyncio.timeout(timeout):
        while True:
            value = await fetch()
            if accept(value):
                return value
            await asyncio.sleep(0.2)


async def test_register_is_idempotent_and_uses_the_world_profile(api):
    first = await api.post("/ai/npc/register", json=LINA)
    assert first.status_code == 201 and first.json() == {
        "npc_id": "lina_baker",
        "workflow_id": "npc-lina_baker",
        "started": True,
    }
    again = await api.post("/ai/npc/register", json=LINA)
    assert again.status_code == 200 and again.json()["started"] is False
    state = (await api.get("/ai/npc/lina_baker")).json()
    assert state["faction"] == "merchants_guild" and state["importance"] == 7  # from the demo world file

    stranger = {"npc_id": "new_face", "name": "New Face", "sprite": 50, "map": "payon", "x": 100, "y": 100}
    assert (await api.post("/ai/npc/register", json=stranger)).status_code == 201
    assert (await api.get("/ai/npc/new_face")).json()["map"] == "payon"


async def test_events_are_accepted_for_living_npcs_only(api):
    await api.post("/ai/npc/register", json=LINA)
    event = {"event_id": "ev-1", "kind": "player_nearby", "player": ARIA}
    accepted = await api.post("/ai/npc/event", json={"npc_id": "lina_baker", "event": event})
    assert accepted.status_code == 202 and accepted.json()["workflow_id"] == "npc-lina_baker"
    await api.post("/ai/npc/event", json={"npc_id": "lina_baker", "event": event})  # a retried POST
    state = await poll(lambda: api.get("/ai/npc/lina_baker"), lambda r: r.json()["events_processed"] >= 1)
    assert state.json()["events_processed"] == 1
    unknown = await api.post("/ai/npc/event", json={"npc_id": "nobody_here", "event": event})
    assert unknown.status_code == 404 and "register" in unknown.json()["detail"]
    assert (await api.get("/ai/npc/nobody_here")).status_code == 404


async def test_player_interaction_answers_with_the_reply(api):
    await api.post("/ai/npc/register", json=LINA)
    answer = await api.post(
        "/ai/player/interaction",
        json={"npc_id": "lina_baker", "turn": {"turn_id": "ev-7", "player": ARIA, "text": "What do you sell?"}},
    )
    assert answer.status_code == 200
    reply = answer.json()
    assert "zeny" in reply["text"] and reply["options"]
    # The same turn again (a bridge retry) gets the same reply, not a second conversation.
    again = await api.post(
        "/ai/player/interaction",
        json={"npc_id": "lina_baker", "turn": {"turn_id": "ev-7", "player": ARIA, "text": "What do you sell?"}},
    )
    assert again.json() == reply
    unknown = await api.post(
        "/ai/player/interaction", json={"npc_id": "nobody_here", "turn": {"player": ARIA, "text": "hi"}}
    )
    assert unknown.status_code == 404


async def test_a_paused_npc_answers_409(api, dev_env):
    await api.post("/ai/npc/register", json=LINA)
    address = dev_env.client.service_client.config.target_host
    temporal = [str(binaries.temporal_cli()), "workflow", "--address", address, "--workflow-id", "npc-lina_baker"]
    subprocess.run([*temporal[:2], "pause", *temporal[2:], "--reason", "test"], check=True, capture_output=True)
    try:
        paused = await api.post(
            "/ai/player/interaction", json={"npc_id": "lina_baker", "turn": {"player": ARIA, "text": "hello?"}}
        )
        assert paused.status_code == 409 and "paused" in paused.json()["detail"]
        assert (await api.get("/ai/npc/lina_baker")).status_code == 409
        # Events are still accepted: the NPC handles them after unpause.
        event = {"event_id": "while-paused", "kind": "player_nearby", "player": ARIA}
        assert (await api.post("/ai/npc/event", json={"npc_id": "lina_baker", "event": event})).status_code == 202
    finally:
        subprocess.run([*temporal[:2], "unpause", *temporal[2:]], check=True, capture_output=True)
    await poll(
        lambda: api.get("/ai/npc/lina_baker"), lambda r: r.status_code == 200 and r.json()["events_processed"] == 1
    )


class SlowToAnswer(OfflineDecisionMaker):
    """A decision maker whose replies take longer than the API waits, like an overloaded LLM (and
    like an LLM, it answers in an activity of its own, not inside the NPC's context read)."""

    def decides_locally(self, tier: str) -> bool:
        return False

    async def converse(self, context: DialogueContext) -> tuple:
        await asyncio.sleep(2)
        return await super().converse(context)


@pytest_asyncio.fixture(loop_scope="session")
async def slow_api(dev_env, redis_client, keys, task_queue):
    app = create_app(api_settings(keys, task_queue), client=dev_env.client, store=redis_client, reply_wait_seconds=0.5)
    async with build_worker(dev_env.client, task_queue, redis_client, keys, SlowToAnswer()):
        async with app.router.lifespan_context(app):
            async with await open_api(app) as http:
                http.headers["X-API-Key"] = API_KEYS[1]
                yield http
    await end_lives(dev_env.client, task_queue, set(), visibility=True)


async def test_a_late_reply_is_504_then_arrives_through_the_queue(slow_api):
    await slow_api.post("/ai/npc/register", json=LINA)
    late = await slow_api.post(
        "/ai/player/interaction",
        json={"npc_id": "lina_baker", "turn": {"turn_id": "ev-9", "player": ARIA, "text": "Hello!"}},
    )
    assert late.status_code == 504
    assert late.headers["Retry-After"] == "5"
    batch = await poll(
        lambda: slow_api.get("/ai/npc/lina_baker/action", params={"limit": 50}),
        lambda r: any(a["action"]["kind"] == "reply" for a in r.json()["actions"]),
    )
    [reply] = [a for a in batch.json()["actions"] if a["action"]["kind"] == "reply"]
    assert reply["action_id"] == "lina_baker-talk-ev-9"
    assert reply["action"]["turn_id"] == "ev-9" and reply["action"]["char_id"] == 150001 and reply["action"]["text"]


async def test_actions_are_leased_acknowledged_once_and_remembered(api, redis_client, keys):
    await api.post(
        "/ai/npc/register",
        json={**LINA, "npc_id": "gareth_guard", "name": "Guard Gareth", "map": "prontera", "x": 156, "y": 60},
    )
    await api.post(
        "/ai/npc/event",
        json={"npc_id": "gareth_guard", "event": {"event_id": "hit", "kind": "player_attacked", "player": ARIA}},
    )
    batch = await poll(lambda: api.get("/ai/actions", params={"lease_seconds": 60}), lambda r: r.json()["actions"])
    actions = batch.json()["actions"]
    assert all(a["attempts"] == 1 and a["npc_id"] == "gareth_guard" for a in actions)
    assert (await api.get("/ai/actions")).json()["actions"] == [], "leased actions are not offered twice"

    first = actions[0]["action_id"]
    done = await api.post(f"/ai/actions/{first}/result", json={"outcome": "done", "detail": "said it"})
    assert done.status_code == 200 and done.json() == {"recorded": True}
    repeat = await api.post(f"/ai/actions/{first}/result", json={"outcome": "done", "detail": "said it"})
    assert repeat.json() == {"recorded": False}
    assert (await api.post(f"/ai/actions/{first}/result", json={"outcome": "failed"})).status_code == 409
    assert (await api.post("/ai/actions/never-queued/result", json={"outcome": "done"})).status_code == 404
    bad = await api.post(f"/ai/actions/{first}/result", json={"outcome": "maybe"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "outcome"

    async def remembered():
        ids = await redis_client.zrange(keys.memory_index("gareth_guard"), 0, -1)
        texts = [await redis_client.hget(keys.memory("gareth_guard", mid), "json") for mid in ids]
        return [t for t in texts if first in t and "was done" in t]

    assert len(await poll(remembered, bool)) == 1, "the NPC remembers the outcome exactly once"


async def test_a_done_action_is_remembered_without_waking_the_npc_and_a_failed_one_wakes_it(
    api, dev_env, redis_client, keys
):
    """The NPC remembers deciding its action; "done" goes to its memory without a workflow task,
    "failed" reaches it as an event it reconsiders."""
    npc = {**LINA, "npc_id": "orin_smith", "name": "Orin the Smith", "map": "prontera", "x": 150, "y": 60}
    await api.post("/ai/npc/register", json=npc)
    for event_id in ("first-hit", "second-hit"):
        event = {"event_id": event_id, "kind": "player_attacked", "player": ARIA}
        await api.post("/ai/npc/event", json={"npc_id": "orin_smith", "event": event})
        await poll(lambda: api.get("/ai/npc/orin_smith/memories"), lambda r: r.json()["total"] >= 2)
    leased: list[dict] = []

    async def lease_both():
        leased.extend((await api.get("/ai/actions", params={"lease_seconds": 60})).json()["actions"])
        return {action["sequence"] for action in leased}

    await poll(lease_both, lambda sequences: len(sequences) >= 2)
    done, failed = (next(a for a in leased if a["sequence"] == s) for s in sorted({a["sequence"] for a in leased})[:2])
    handle = dev_env.client.get_workflow_handle("npc-orin_smith")
    settled = await poll(lambda: api.get("/ai/npc/orin_smith"), lambda r: r.json()["pending_events"] == 0)
    processed = settled.json()["events_processed"]

    assert (await api.post(f"/ai/actions/{done['action_id']}/result", json={"outcome": "done"})).status_code == 200
    memories = await poll(
        lambda: api.get("/ai/npc/orin_smith/memories", params={"query": "was done", "limit": 100}),
        lambda r: any(m["memory"]["memory_id"] == f"result-{done['action_id']}" for m in r.json()["memories"]),
    )
    remembered = next(
        m["memory"] for m in memories.json()["memories"] if m["memory"]["memory_id"] == f"result-{done['action_id']}"
    )
    assert remembered["text"] == f"My action {done['action_id']} was done" and remembered["place"] == "prontera"
    signals = [
        event.workflow_execution_signaled_event_attributes.input.payloads[0].data
        async for event in handle.fetch_history_events()
        if event.HasField("workflow_execution_signaled_event_attributes")
    ]
    assert not [data for data in signals if done["action_id"].encode() in data], "a done action wakes nobody"

    answer = await api.post(
        f"/ai/actions/{failed['action_id']}/result", json={"outcome": "failed", "detail": "blocked"}
    )
    assert answer.status_code == 200
    state = await poll(lambda: api.get("/ai/npc/orin_smith"), lambda r: r.json()["events_processed"] > processed)
    assert state.json()["events_processed"] == processed + 1, "the failed action reached the NPC once"
    decisions = await handle.query("recent_decisions", result_type=list[dict])
    assert any(f"result-{failed['action_id']}" in d["event_ids"] for d in decisions), "and it reconsidered"


async def test_world_state_round_trip(api):
    saved = await api.post(
        "/ai/world/state", json={"system": "economy", "values": {"bread_index": 120, "mood": "tense"}}
    )
    assert saved.status_code == 200
    assert (await api.get("/ai/world/state")).json()["economy"] == {"bread_index": "120", "mood": "tense"}
    bad = await api.post("/ai/world/state", json={"system": "weather", "values": {"rain": 1}})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "system"


async def test_readiness_reports_its_dependencies(api):
    assert (await api.get("/ready")).json() == {"status": "ready"}
