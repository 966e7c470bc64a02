"""A `temporal workflow reset` runs an NPC's activities again: relationship scores move once per
change id all the same, and the relationship's history keeps one entry per change."""

from __future__ import annotations

import pytest

from aiworld.memory.store import MemoryStore
from aiworld.models import GameEvent, PlayerRef
from tests.conftest import demo_profile
from tests.workflows.test_npc_life import settled_history_length
from tests.workflows.test_operator_controls import temporal

pytestmark = pytest.mark.dev_server
BORIN = PlayerRef(char_id=150002, name="Borin", level=12)


async def test_relationship_scores_move_once_per_change_id_across_a_reset(dev_life, dev_env, redis_client, keys):
    profile = demo_profile("gareth_guard", importance=4)
    handle = await dev_life.start(profile)
    await handle.signal("game_event", GameEvent(event_id="hit-1", kind="player_attacked", player=BORIN))
    await handle.signal(
        "game_event", GameEvent(event_id="gift-1", kind="item_received", player=BORIN, item_id=512, amount=1)
    )
    await dev_life.wait_for(handle, lambda s: s.events_processed == 2 and s.pending_events == 0)
    await dev_life.wait_for_decisions(handle, lambda ds: {"hit-1", "gift-1"} <= {e for d in ds for e in d.event_ids})
    await settled_history_length(handle)
    store = MemoryStore(redis_client, keys)
    party = "player:150002"
    before = await store.relationships(profile.npc_id, [party])
    [relationship] = await store.relationship_graph.details(profile.npc_id)
    assert before == {party: -10} and relationship.interactions == 2

    temporal(
        dev_env, "workflow", "reset", "--workflow-id", handle.id, "--type", "FirstWorkflowTask", "--reason", "replay"
    )
    reset = dev_env.client.get_workflow_handle(handle.id)
    await dev_life.wait_for_decisions(reset, lambda ds: {"hit-1", "gift-1"} <= {e for d in ds for e in d.event_ids})
    await settled_history_length(reset)

    assert await store.relationships(profile.npc_id, [party]) == before
    [again] = await store.relationship_graph.details(profile.npc_id)
    assert again.interactions == 2 and again.history == relationship.history
