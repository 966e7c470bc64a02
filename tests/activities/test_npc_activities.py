"""The NPC's store writes on the real Redis: news an NPC saves is news it is not told again."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio.testing import ActivityEnvironment

from activities.memory_activities import MemoryActivities
from activities.npc_activities import NpcActivities, OutcomeWrite, RecordRequest
from aiworld.memory.meetings import MeetingRequest
from aiworld.memory.store import MemoryStore
from aiworld.models import GameEvent
from aiworld.npc import experience
from aiworld.npc.offline_policy import OfflineDecisionMaker
from aiworld.store.action_queue import ActionQueue
from aiworld.world.feed import WorldFeed
from tests.activities.test_memory_activities import neighbour

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


async def test_news_both_heard_from_the_world_is_not_retold_between_them(time_skipping_env, redis_client, keys):
    store = MemoryStore(redis_client, keys)
    npcs = NpcActivities(store, ActionQueue(redis_client, keys), OfflineDecisionMaker(), WorldFeed(redis_client, keys))
    meetings = MemoryActivities(store, OfflineDecisionMaker())
    broadcast = GameEvent(event_id="siege-1", kind="world_event", text="Prontera castle is under siege", importance=6)
    speaker, listener = neighbour("speaker", 146), neighbour("listener", 150)
    for profile in (speaker, listener):  # both got the broadcast and saved it in their decision
        await store.publish_npc(profile, {})
        memory = experience.memory_of_event(broadcast, profile, "1-event-0", NOW)
        await ActivityEnvironment().run(npcs.record_outcome, RecordRequest(profile=profile, memories=[memory]))

    met = await ActivityEnvironment().run(
        meetings.meet_neighbours, MeetingRequest(profile=speaker, sequence=2, now=NOW)
    )

    assert met.said == ["greet-speaker-listener-2"]
    heard = [memory for memory, _ in await store.load("listener", await store.all_ids("listener"))]
    assert sorted((memory.memory_id, memory.news_id) for memory in heard) == [
        ("1-event-0", "siege-1"),
        ("heard-greet-speaker-listener-2", None),
    ]


def news_saved_by(speaker, event_id: str) -> OutcomeWrite:
    """A decision's save that carries world news and asks for a meeting, as CHEAPER_DECISIONS does."""
    news = GameEvent(event_id=event_id, kind="world_event", text="Prontera castle is under siege", importance=6)
    return OutcomeWrite(
        record=RecordRequest(
            profile=speaker,
            memories=[experience.memory_of_event(news, speaker, "3-event-0", NOW)],
            npc_fields={"action": "discussing news", "mood": "worried"},
        ),
        meeting=MeetingRequest(profile=speaker, sequence=3, now=NOW),
    )


async def test_a_save_that_asks_for_a_meeting_tells_the_neighbours_once(redis_client, keys):
    store = MemoryStore(redis_client, keys)
    npcs = NpcActivities(store, ActionQueue(redis_client, keys), OfflineDecisionMaker(), WorldFeed(redis_client, keys))
    speaker, listener = neighbour("speaker", 146), neighbour("listener", 150)
    for profile in (speaker, listener):
        await store.publish_npc(profile, {})
    write = news_saved_by(speaker, "siege-2")

    await ActivityEnvironment().run(npcs.save_outcome, write)
    await ActivityEnvironment().run(npcs.save_outcome, write)  # a retried save

    heard = [memory for memory, _ in await store.load("listener", await store.all_ids("listener"))]
    assert [memory.news_id for memory in heard] == ["siege-2"]


async def test_a_meeting_that_fails_after_the_save_leaves_the_save_done(redis_client, keys):
    """A neighbour's corrupt memory index fails the meeting, not the decision's save: the save is
    not written again and the NPC's next events do not wait behind it."""
    store = MemoryStore(redis_client, keys)
    npcs = NpcActivities(store, ActionQueue(redis_client, keys), OfflineDecisionMaker(), WorldFeed(redis_client, keys))
    speaker, listener = neighbour("speaker", 146), neighbour("listener", 150)
    for profile in (speaker, listener):
        await store.publish_npc(profile, {})
    await redis_client.set(keys.memory_index("listener"), "not a sorted set")

    await ActivityEnvironment().run(npcs.save_outcome, news_saved_by(speaker, "siege-3"))

    saved = [memory for memory, _ in await store.load("speaker", await store.all_ids("speaker"))]
    assert [memory.news_id for memory in saved] == ["siege-3"]
    assert await redis_client.type(keys.memory_index("listener")) == "string"
