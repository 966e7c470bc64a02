"""Meeting the neighbours on the real Redis and Temporal: what does not wake a listener is written
into its memory and liking once, however often the meeting runs, in the words its own life uses;
a neighbour without a published profile, or whose life has ended, hears nothing."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio.testing import ActivityEnvironment

from activities.memory_activities import MeetingRequest, MemoryActivities
from aiworld.memory.store import MemoryStore
from aiworld.models import Memory
from aiworld.npc.offline_policy import OfflineDecisionMaker
from aiworld.world.directory import NpcDirectory
from tests.conftest import demo_profile

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def neighbour(npc_id: str, x: int):
    return demo_profile("lina_baker").model_copy(update={"npc_id": npc_id, "name": npc_id.title(), "x": x})


async def test_greetings_are_remembered_once_and_news_to_pass_on_wakes_only_a_living_listener(
    time_skipping_env, redis_client, keys
):
    store = MemoryStore(redis_client, keys)
    speaker, friend, stranger = neighbour("speaker", 146), neighbour("friend", 150), neighbour("stranger", 148)
    for profile in (speaker, friend):  # as registration does
        await store.publish_npc(profile, {})
    # Listed on the map, but its life never published a profile: nobody to remember anything.
    await NpcDirectory(redis_client, keys).place(stranger.npc_id, stranger.map, stranger.x, stranger.y, "none")
    meetings = MemoryActivities(time_skipping_env.client, store, OfflineDecisionMaker())
    greet = MeetingRequest(profile=speaker, sequence=7, now=NOW)

    first = await ActivityEnvironment().run(meetings.meet_neighbours, greet)
    again = await ActivityEnvironment().run(meetings.meet_neighbours, greet)  # a retried activity

    assert first == again
    assert sorted(first.neighbours) == ["friend", "stranger"]
    assert first.said == ["greet-speaker-friend-7"]
    [(heard, _)] = await store.load("friend", await store.all_ids("friend"))
    assert heard.model_dump(exclude={"valence"}) == Memory(
        memory_id="heard-greet-speaker-friend-7",
        text="speaker said:",
        words="Good day! Speaker here.",
        about="npc:speaker",
        participants=["npc:speaker"],
        place=friend.map,
        created_at=NOW,
    ).model_dump(exclude={"valence"})
    assert await store.relationships("friend", ["npc:speaker"]) == {"npc:speaker": 1}
    assert await store.all_ids("stranger") == []

    # News to pass on is signalled: the friend's life has ended (no workflow), so it is not said.
    news = Memory(memory_id="8-event-0", text="News: The Orc Lord stirs", news_id="orc", created_at=NOW)
    await store.remember("speaker", news)
    told = await ActivityEnvironment().run(
        meetings.meet_neighbours, MeetingRequest(profile=speaker, sequence=8, now=NOW)
    )
    assert told.said == []
    assert [memory.memory_id for memory, _ in await store.load("friend", await store.all_ids("friend"))] == [
        "heard-greet-speaker-friend-7"
    ]
