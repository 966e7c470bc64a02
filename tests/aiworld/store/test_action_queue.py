"""The action queue on the real Redis: once per id, leased claims, idempotent results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aiworld.models import QueuedAction, SayAction
from aiworld.store.action_queue import ActionQueue, ConflictingResult, UnknownAction

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def say(action_id: str, npc_id: str = "lina_baker", at: datetime = T0) -> QueuedAction:
    return QueuedAction(
        action_id=action_id,
        npc_id=npc_id,
        sequence=1,
        action=SayAction(text="Fresh bread!"),
        map="prontera",
        npc_name="Lina the Baker",
        created_at=at,
    )


async def test_an_action_id_is_queued_once_even_after_it_finished(redis_client, keys):
    queue = ActionQueue(redis_client, keys)
    assert await queue.enqueue(say("a-1-0"))
    assert not await queue.enqueue(say("a-1-0"))
    [claimed] = await queue.claim(now=T0)
    assert await queue.complete(claimed.action.action_id, "done")
    assert not await queue.enqueue(say("a-1-0")), "a reset re-running the activity must not queue it again"
    assert await queue.claim(now=T0 + timedelta(hours=1)) == []


async def test_a_lease_hides_an_action_until_it_expires(redis_client, keys):
    queue = ActionQueue(redis_client, keys)
    await queue.enqueue(say("a-1-0"))
    first = await queue.claim(lease_seconds=30, now=T0)
    assert [c.attempts for c in first] == [1]
    assert await queue.claim(now=T0 + timedelta(seconds=10)) == []
    again = await queue.claim(now=T0 + timedelta(seconds=31))
    assert [(c.action.action_id, c.attempts) for c in again] == [("a-1-0", 2)]


async def test_claims_per_npc_and_across_npcs_stay_in_step(redis_client, keys):
    queue = ActionQueue(redis_client, keys)
    await queue.enqueue(say("a-1-0", "lina_baker", T0))
    await queue.enqueue(say("b-1-0", "gareth_guard", T0 + timedelta(seconds=1)))
    mine = await queue.claim(npc_id="gareth_guard", now=T0 + timedelta(seconds=2))
    assert [c.action.action_id for c in mine] == ["b-1-0"]
    rest = await queue.claim(now=T0 + timedelta(seconds=2))
    assert [c.action.action_id for c in rest] == ["a-1-0"], "a leased action is not offered on the other list"


async def test_results_are_idempotent_and_contradictions_refused(redis_client, keys):
    queue = ActionQueue(redis_client, keys)
    await queue.enqueue(say("a-1-0"))
    assert await queue.complete("a-1-0", "done", "said it")
    assert not await queue.complete("a-1-0", "done", "said it")
    with pytest.raises(ConflictingResult):
        await queue.complete("a-1-0", "failed", "")
    with pytest.raises(UnknownAction):
        await queue.complete("never-queued", "done")
    assert (await queue.status("a-1-0"))["status"] == "done"
    assert await queue.pending("lina_baker") == []
