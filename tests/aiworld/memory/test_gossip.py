"""Gossip on the real Redis: retellings lose detail, the plan is the same when an activity runs
again, news is told to each NPC once and stops at the hop limit, greetings are capped per pair."""

from __future__ import annotations

from datetime import UTC, datetime

from aiworld.config import MemorySettings
from aiworld.memory.gossip import Gossip, liking_change, retell, tone
from aiworld.models import Memory
from aiworld.world.directory import NpcDirectory
from tests.conftest import demo_profile

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
STORY = "The Orc Lord stirs west of Geffen, three scouts saw him at dawn near the old mill"


def test_each_retelling_keeps_less_of_the_story():
    first, second, third = (retell(STORY, n) for n in (1, 2, 3))
    assert first.startswith("I heard that The Orc Lord") and "three" in first
    assert second.startswith("Word is that") and "three" not in second and "some" in second
    assert len(STORY) > len(first) - 13 and len(first) - 13 > len(second) - 13 > len(third) - 18
    assert retell(STORY, 0) == STORY


def test_what_is_said_moves_liking():
    guard = demo_profile("gareth_guard", faction_loyalty=100)
    assert tone("She gave me a gift") == 1 and tone("A thief stole my bread") == -1 and tone("It rains") == 0
    assert liking_change("She gave me a gift, so kind", guard) == 3
    assert liking_change("It rains", guard) == 1
    assert liking_change("The prontera guard are cowards and liars", guard) == -4
    assert liking_change("A thief stole my bread", guard) == 0


def neighbour(npc_id: str, x: int):
    return demo_profile("lina_baker").model_copy(update={"npc_id": npc_id, "x": x})


async def test_a_plan_made_twice_is_the_same_and_news_is_told_once(redis_client, keys):
    settings = MemorySettings(meeting_radius=6, gossip_hops=2)
    gossip = Gossip(redis_client, keys, settings)
    speaker, listener, other = neighbour("speaker", 146), neighbour("listener", 150), neighbour("other", 148)
    directory = NpcDirectory(redis_client, keys)
    for profile in (speaker, listener, other):
        await directory.place(profile.npc_id, profile.map, profile.x, profile.y, profile.faction)
    news = Memory(memory_id="1-event-0", text=f"News: {STORY}", news_id="orc", importance=6, created_at=NOW)

    first = await gossip.plan(speaker, 1, NOW, [news])
    again = await gossip.plan(speaker, 1, NOW, [news])  # the activity ran again: the same remarks
    assert first == again
    assert [(r.listener, r.event.facts) for r in first.remarks] == [
        ("listener", {"news_id": "orc", "retellings": 1}),
        ("other", {"news_id": "orc", "retellings": 1}),
    ]
    # Another speaker has nothing new for them: news once, and the pair greets once per interval.
    later = await gossip.plan(other, 2, NOW, [news.model_copy(update={"retellings": 1})])
    assert [r.event.event_id for r in later.remarks] == ["greet-other-listener-2", "greet-other-speaker-2"]
    assert (await gossip.plan(other, 3, NOW, [])).remarks == []


async def test_news_stops_at_the_hop_limit(redis_client, keys):
    gossip = Gossip(redis_client, keys, MemorySettings(gossip_hops=1))
    speaker, listener = neighbour("speaker", 146), neighbour("listener", 150)
    directory = NpcDirectory(redis_client, keys)
    for profile in (speaker, listener):
        await directory.place(profile.npc_id, profile.map, profile.x, profile.y, profile.faction)
    heard = Memory(
        memory_id="1-event-0",
        kind="gossip",
        text="x said:",
        words="I heard",
        news_id="orc",
        retellings=1,
        created_at=NOW,
    )
    [remark] = (await gossip.plan(speaker, 1, NOW, [heard])).remarks
    assert remark.event.event_id.startswith("greet-") and not remark.event.facts
    assert await gossip.pass_on(speaker, NOW, heard) == []
