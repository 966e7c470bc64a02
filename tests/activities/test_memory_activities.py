"""Meeting the neighbours on the real Redis: what is said is written into each listener's memory
and liking once, however often the meeting runs, in the words its own life uses; news spreads on
from listener to listener in the same meeting up to the hop limit; a neighbour without a
published profile hears nothing."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio.testing import ActivityEnvironment

from activities.memory_activities import MemoryActivities
from aiworld.config import MemorySettings
from aiworld.memory.meetings import MeetingRequest
from aiworld.memory.store import MemoryStore
from aiworld.models import Memory
from aiworld.npc.offline_policy import OfflineDecisionMaker
from aiworld.world.directory import NpcDirectory
from tests.conftest import demo_profile

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def neighbour(npc_id: str, x: int):
    return demo_profile("lina_baker").model_copy(update={"npc_id": npc_id, "name": npc_id.title(), "x": x})


async def heard_by(store: MemoryStore, npc_id: str) -> list[Memory]:
    return [memory for memory, _ in await store.load(npc_id, await store.all_ids(npc_id))]


async def test_what_is_said_is_remembered_once_and_news_spreads_on_to_the_hop_limit(redis_client, keys):
    store = MemoryStore(redis_client, keys, MemorySettings(meeting_radius=6, gossip_hops=2))
    # In a row: the speaker meets the friend (4 cells) and the stranger; the friend alone meets
    # the far one (5 cells on), who alone meets the farthest.
    speaker, stranger, friend = neighbour("speaker", 140), neighbour("stranger", 142), neighbour("friend", 144)
    far, farthest = neighbour("far", 149), neighbour("farthest", 154)
    for profile in (speaker, friend, far, farthest):  # as registration does
        await store.publish_npc(profile, {})
    # Listed on the map, but its life never published a profile: nobody to remember anything.
    await NpcDirectory(redis_client, keys).place(stranger.npc_id, stranger.map, stranger.x, stranger.y, "none")
    meetings = MemoryActivities(store, OfflineDecisionMaker())
    greet = MeetingRequest(profile=speaker, sequence=7, now=NOW)

    first = await ActivityEnvironment().run(meetings.meet_neighbours, greet)
    again = await ActivityEnvironment().run(meetings.meet_neighbours, greet)  # a retried activity

    assert first == again
    assert sorted(first.neighbours) == ["friend", "stranger"]
    assert first.said == ["greet-speaker-friend-7"]
    [heard] = await heard_by(store, "friend")
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

    # News: the friend hears it and tells the far one at once, who holds it at the hop limit.
    story = "The Orc Lord stirs west of Geffen, three scouts saw him at dawn near the old mill"
    await store.remember("speaker", Memory(memory_id="8-event-0", text=f"News: {story}", news_id="orc", created_at=NOW))
    told = MeetingRequest(profile=speaker, sequence=8, now=NOW)
    spread = await ActivityEnvironment().run(meetings.meet_neighbours, told)
    assert spread == await ActivityEnvironment().run(meetings.meet_neighbours, told)
    assert spread.said == ["news-speaker-friend-orc", "news-friend-far-orc"]
    [(friend_heard, friend_retellings)] = [
        (m.words, m.retellings) for m in await heard_by(store, "friend") if m.news_id
    ]
    [(far_heard, far_retellings)] = [(m.words, m.retellings) for m in await heard_by(store, "far") if m.news_id]
    assert (friend_retellings, far_retellings) == (1, 2)
    assert "three" in friend_heard and "three" not in far_heard
    assert await heard_by(store, "farthest") == []
    assert await store.relationships("far", ["npc:friend"]) == {"npc:friend": 1}
