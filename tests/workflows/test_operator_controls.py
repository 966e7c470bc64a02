"""What an operator does with the `temporal` CLI on the dev server of `aiworld dev`: pause,
unpause and reset an NPC, and find NPCs by their search attributes."""

from __future__ import annotations

import asyncio
import subprocess

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.service import RPCError, RPCStatusCode

from aiworld.models import TalkReply, TalkTurn
from aiworld.ops import binaries
from aiworld.store.action_queue import ActionQueue
from tests.conftest import demo_profile
from tests.workflows.test_npc_life import ARIA, nearby, settled_history_length

pytestmark = pytest.mark.dev_server


def temporal(dev_env, *args: str) -> str:
    """Run the operator's `temporal` CLI against the test's dev server."""
    address = dev_env.client.service_client.config.target_host
    done = subprocess.run(
        [str(binaries.temporal_cli()), *args, "--address", address],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


async def test_paused_npc_refuses_talk_and_keeps_signals_for_later(dev_life, dev_env):
    handle = await dev_life.start(demo_profile("nessa_florist", importance=4))
    await dev_life.wait_for(handle, lambda s: s.decision_sequence == 0)
    temporal(dev_env, "workflow", "pause", "--workflow-id", handle.id, "--reason", "operator check")

    with pytest.raises(RPCError) as refused:
        await handle.execute_update("talk", TalkTurn(turn_id="p1", player=ARIA, text="hello"), result_type=TalkReply)
    assert refused.value.status is RPCStatusCode.FAILED_PRECONDITION
    assert "paused" in str(refused.value).lower()

    await handle.signal("game_event", nearby("while-paused"))  # accepted and held durably
    # The same worker goes on with another NPC's event meanwhile: once that one is handled, the
    # paused NPC had every chance to handle its own, and has not.
    other = await dev_life.start(demo_profile("tess_fishmonger", importance=4))
    await other.signal("game_event", nearby("meanwhile"))
    await dev_life.wait_for(other, lambda s: s.events_processed == 1)
    history = await handle.fetch_history()
    signalled = max(
        i for i, e in enumerate(history.events) if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    )
    after = [e.event_type for e in history.events[signalled:]]
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED not in after, "a paused NPC handled an event"

    temporal(dev_env, "workflow", "unpause", "--workflow-id", handle.id)
    state = await dev_life.wait_for(handle, lambda s: s.events_processed == 1)
    assert [p.name for p in state.players_near] == ["Aria"]


async def test_reset_leaves_exactly_one_copy_of_each_action(dev_life, dev_env, redis_client, keys):
    profile = demo_profile("gareth_guard", importance=4)
    handle = await dev_life.start(profile)
    await handle.signal("game_event", nearby("arrival"))
    await dev_life.wait_for_decisions(handle, lambda ds: any(d.queued_action_ids for d in ds))
    await settled_history_length(handle)
    queue = ActionQueue(redis_client, keys)
    before = [action.action_id for action in await queue.pending(profile.npc_id)]
    assert before

    temporal(
        dev_env,
        "workflow",
        "reset",
        "--workflow-id",
        handle.id,
        "--type",
        "FirstWorkflowTask",
        "--reason",
        "replay the day",
    )
    # The new run replays the signal and runs every activity again.
    reset_handle = dev_env.client.get_workflow_handle(handle.id)
    await dev_life.wait_for_decisions(reset_handle, lambda ds: any(d.queued_action_ids for d in ds))
    await settled_history_length(reset_handle)
    after = [action.action_id for action in await queue.pending(profile.npc_id)]
    assert sorted(after) == sorted(before)
    assert len(after) == len(set(after))
    ready = await redis_client.zrange(keys.ready_actions(), 0, -1)
    assert sorted(ready) == sorted(before)


async def test_operators_find_npcs_by_map(dev_life, dev_env):
    await dev_life.start(demo_profile("marlo_sailor"))
    await dev_life.start(demo_profile("tess_fishmonger"))
    query = f"NpcMap='izlude' AND TaskQueue='{dev_life.task_queue}'"
    async with asyncio.timeout(30):
        while True:
            found = sorted([wf.id async for wf in dev_env.client.list_workflows(query)])
            if found == ["npc-marlo_sailor", "npc-tess_fishmonger"]:
                break
            await asyncio.sleep(0.3)
    listed = temporal(dev_env, "workflow", "list", "--query", query)
    assert "npc-marlo_sailor" in listed and "npc-tess_fishmonger" in listed
    described = temporal(dev_env, "workflow", "describe", "--workflow-id", "npc-marlo_sailor")
    assert "Marlo" in described  # the static summary names the NPC
