"""Game -> bridge -> API -> NPC workflow -> queue -> bridge -> game, with nothing lost or doubled."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import aiomysql
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError

from bridge.api_client import ApiClient
from bridge.service import Bridge, BridgeOptions
from tests.api.conftest import API_KEYS
from tests.rathena.simulator import Character, script_routines
from workflows.npc_state import NpcLifeInput

ARIA = Character(
    char_id=150001, account_id=2000001, name="Aria", base_level=34, job_class=4, map="prontera", x=156, y=62
)


async def run_bridge_in_process(slice_):
    pool = await aiomysql.create_pool(**slice_.db, autocommit=True, minsize=1, maxsize=4)
    api = ApiClient(slice_.api_url, API_KEYS[0])
    stop = asyncio.Event()
    task = asyncio.create_task(Bridge(pool, api, BridgeOptions(poll_seconds=0.2, world_seconds=1)).run(stop))

    async def shutdown():
        stop.set()
        await task
        await api.aclose()
        pool.close()
        await pool.wait_closed()

    return shutdown


async def npc_memories(redis_client, keys, npc_id: str) -> list[str]:
    ids = await redis_client.zrange(keys.memory_index(npc_id), 0, -1)
    return [json.loads(await redis_client.hget(keys.memory(npc_id, mid), "json"))["text"] for mid in ids]


async def test_the_slice_from_click_to_reply_and_from_decision_to_remembered_outcome(slice_, redis_client, keys):
    game = slice_.game
    shutdown = await run_bridge_in_process(slice_)
    try:
        await game.register_all()

        async def registered():
            return len(await slice_.rows("SELECT 1 FROM ai_bridge_cursor WHERE position >= %s", len(game.npcs)))

        await slice_.until(registered)
        # A player clicks Lina and types a line; the dialogue waits for the reply row.
        event_id = await game.player_talks("lina_baker", ARIA, "Hello! What do you sell?")
        reply = await game.wait_reply(event_id, polls=40)
        assert reply is not None and "zeny" in reply["reply"] and reply["options"]
        # She picks the first option from the menu: it is her next line, and it is answered too.
        follow_up = await game.player_picks("lina_baker", ARIA, reply, 1)
        assert await game.wait_reply(follow_up, polls=40) is not None
        assert await slice_.rows("SELECT text FROM ai_event WHERE id = %s", follow_up) == [(reply["options"][0],)]

        # Aria slays a monster next to Guard Gareth: he reacts on his own, in the game.
        await game.player_kills(ARIA, 1002)

        async def gareth_rows():
            return await slice_.rows("SELECT action_id, kind FROM ai_action WHERE npc_id = 'gareth_guard'")

        rows = await slice_.until(gareth_rows)
        executed = await game.dispatcher_tick()
        assert {row["kind"] for row in executed} >= {kind for _, kind in rows}
        assert all(row["outcome"] == "done" for row in executed)
        assert await game.dispatcher_tick() == [], "executed once"

        # The results flow back; the NPC remembers what happened to its actions, once each.
        async def remembered():
            # Each result is an event of its own: wait until every one of them is remembered.
            texts = await npc_memories(redis_client, keys, "gareth_guard")
            done = [t for t in texts if "was done" in t]
            return done if len(done) >= len(rows) else None

        await slice_.until(lambda: _all_reported(slice_))
        outcomes = await slice_.until(remembered)
        assert sorted(outcomes) == sorted({f"My action {action_id} was done" for action_id, _ in rows})

        # The reply also came through the queue: it landed on the same dialogue row, not a second one.
        assert len(await slice_.rows("SELECT event_id FROM ai_dialogue WHERE event_id = %s", event_id)) == 1
        assert await slice_.rows("SELECT action_id FROM ai_action GROUP BY action_id HAVING COUNT(*) > 1") == []
    finally:
        await shutdown()


async def _all_reported(slice_) -> bool:
    rows = await slice_.rows("SELECT COUNT(*) FROM ai_action WHERE reported = 0")
    total = await slice_.rows("SELECT COUNT(*) FROM ai_action")
    return total[0][0] > 0 and rows[0][0] == 0


def start_bridge_process(slice_) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIWORLD_")}
    env.update(
        AIWORLD_API_URL=slice_.api_url,
        AIWORLD_API_KEYS=API_KEYS[0],
        AIWORLD_DB_HOST=slice_.db["host"],
        AIWORLD_DB_PORT=str(slice_.db["port"]),
        AIWORLD_DB_USER=slice_.db["user"],
        AIWORLD_DB_PASSWORD=slice_.db["password"],
        AIWORLD_DB_NAME=slice_.db["db"],
        AIWORLD_LOG_LEVEL="WARNING",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "aiworld.cli", "bridge"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


async def test_killing_the_bridge_mid_flow_loses_and_doubles_nothing(slice_, redis_client, keys, dev_env):
    game = slice_.game
    await game.register_all()
    players = [Character(char_id=150100 + n, account_id=2000100 + n, name=f"Visitor{n}") for n in range(12)]
    sent: dict[str, int] = {}
    for npc_id in ("lina_baker", "old_tomas", "pip_urchin"):
        for player in players:
            await game.player_touches(npc_id, player)
            sent[npc_id] = sent.get(npc_id, 0) + 1
    last_id = (await slice_.rows("SELECT MAX(id) FROM ai_event"))[0][0]

    bridge = start_bridge_process(slice_)
    try:

        async def some_progress():
            rows = await slice_.rows("SELECT position FROM ai_bridge_cursor WHERE name = 'events'")
            return rows and 12 <= rows[0][0] < last_id

        await slice_.until(some_progress, timeout=60)
    finally:
        bridge.send_signal(signal.SIGKILL)  # no goodbye: as if the machine died
        bridge.wait()

    bridge = start_bridge_process(slice_)
    try:

        async def caught_up():
            rows = await slice_.rows("SELECT position FROM ai_bridge_cursor WHERE name = 'events'")
            return rows and rows[0][0] == last_id

        await slice_.until(caught_up, timeout=90)
        for npc_id, count in sent.items():
            handle = dev_env.client.get_workflow_handle(f"npc-{npc_id}")

            async def processed(handle=handle, count=count):
                state = await handle.query("state")
                return state["events_processed"] >= count and state["pending_events"] == 0

            await slice_.until(processed)
            state = await handle.query("state")
            assert state["events_processed"] == count, f"{npc_id}: every touch once, none twice"
        assert await slice_.rows("SELECT * FROM ai_event_rejected") == []

        # Every action the NPCs queued reaches the game as exactly one row.
        async def all_delivered():
            queued = {
                key.split("action:", 1)[1] async for key in redis_client.scan_iter(match=f"{keys.prefix}action:*")
            }
            queued = {action_id for action_id in queued if "-talk-" not in action_id}
            rows = {row[0] for row in await slice_.rows("SELECT action_id FROM ai_action")}
            return queued and queued == rows

        await slice_.until(all_delivered)
        assert await slice_.rows("SELECT action_id FROM ai_action GROUP BY action_id HAVING COUNT(*) > 1") == []
    finally:
        bridge.send_signal(signal.SIGTERM)
        try:
            bridge.wait(timeout=10)
        except subprocess.TimeoutExpired:
            bridge.kill()
            bridge.wait()


async def test_a_routine_stop_the_map_refuses_leaves_the_npcs_routine(slice_, dev_env):
    """checkcell in the game -> register row -> bridge -> API -> the NPC lives without that stop."""
    game = slice_.game
    tomas = game.npcs["old_tomas"]
    refused = script_routines()["old_tomas"][1]
    game.unwalkable = {(tomas.map, *refused)}
    shutdown = await run_bridge_in_process(slice_)
    try:
        await game.register_all()
        handle = dev_env.client.get_workflow_handle("npc-old_tomas")

        async def started_with():
            # The life this registration started (an earlier test's NPC of the same id has ended).
            try:
                described = await handle.describe()
            except RPCError:
                return None
            if described.status != WorkflowExecutionStatus.RUNNING:
                return None
            history = await dev_env.client.get_workflow_handle(handle.id, run_id=described.run_id).fetch_history()
            [payload] = history.events[0].workflow_execution_started_event_attributes.input.payloads
            return NpcLifeInput.model_validate_json(payload.data).profile

        profile = await slice_.until(started_with)
    finally:
        await shutdown()
    assert refused not in profile.routine
    assert profile.routine and all(stop in script_routines()["old_tomas"] for stop in profile.routine)
