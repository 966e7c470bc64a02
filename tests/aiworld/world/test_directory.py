"""The NPC directory on the real Redis: it follows an NPC's moves and answers each scope."""

from __future__ import annotations

import pytest
import redis.asyncio as redis
from pydantic import ValidationError

from aiworld.config import Settings
from aiworld.memory.store import MemoryStore
from aiworld.models import GameEventKind
from aiworld.ops.dev import load_world_into
from aiworld.world.definition import load_world
from aiworld.world.directory import NpcDirectory
from aiworld.world.news import Scope, WorldNews
from aiworld.world.recipients import recipients_page
from tests.conftest import REDIS_URL, demo_profile, end_lives


async def test_the_directory_follows_an_npc_from_map_to_map_and_faction_to_faction(redis_client, keys):
    store, directory = MemoryStore(redis_client, keys), NpcDirectory(redis_client, keys)
    await store.publish_npc(demo_profile("lina_baker", map="prontera", x=150, y=180, area=None, routine=[]), {})
    await store.publish_npc(
        demo_profile("gareth_guard", map="prontera", x=170, y=180, area=None, routine=[], faction="prontera_guard"), {}
    )
    assert await directory.near("prontera", 150, 180, 10) == ["lina_baker"]
    assert await directory.near("prontera", 160, 180, 10) == ["gareth_guard", "lina_baker"]

    await store.publish_npc(
        demo_profile("lina_baker", map="payon", x=100, y=100, area=None, routine=[], faction="prontera_guard"), {}
    )
    assert await directory.on_map("prontera") == {"gareth_guard": (170, 180)}
    assert await directory.on_map("payon") == {"lina_baker": (100, 100)}
    assert await directory.in_faction("prontera_guard") == ["gareth_guard", "lina_baker"]
    assert await directory.everyone() == {"gareth_guard": "prontera", "lina_baker": "payon"}
    assert await directory.maps() == ["payon", "prontera"]

    await directory.remove("gareth_guard")
    assert await directory.on_map("prontera") == {}
    assert await directory.in_faction("prontera_guard") == ["lina_baker"]


async def test_a_move_cut_short_after_its_first_step_is_finished_by_the_next_publish(redis_client, keys, monkeypatch):
    """The NPC's hash names its old map until the old listing is removed: a publish that stopped
    between the two (the store gone) leaves it listed twice, and the next one tidies up."""
    store, directory = MemoryStore(redis_client, keys), NpcDirectory(redis_client, keys)
    await store.publish_npc(demo_profile("lina_baker", map="prontera", x=150, y=180, area=None, routine=[]), {})
    assert await redis_client.hmget(keys.npc("lina_baker"), ["map", "faction_id"]) == ["prontera", "merchants_guild"]
    moved = demo_profile("lina_baker", map="payon", x=100, y=100, area=None, routine=[], faction="payon_guild")

    cut_short = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    pipelines = cut_short.pipeline
    made = []

    def second_step_fails(*args, **kwargs):
        pipe = pipelines(*args, **kwargs)
        made.append(pipe)
        if len(made) == 2:

            async def store_gone(*_args, **_kwargs):
                raise redis.ConnectionError("the store went away")

            pipe.execute = store_gone  # type: ignore[method-assign]
        return pipe

    monkeypatch.setattr(cut_short, "pipeline", second_step_fails)
    with pytest.raises(redis.ConnectionError):
        await MemoryStore(cut_short, keys).publish_npc(moved, {"mood": "curious"})
    await cut_short.aclose()
    assert await directory.everyone() == {"lina_baker": "payon"}
    assert set(await directory.on_map("prontera")) == {"lina_baker"}  # the old listing is still there

    await store.publish_npc(moved, {"mood": "curious"})

    assert await directory.on_map("prontera") == {}
    assert await directory.on_map("payon") == {"lina_baker": (100, 100)}
    assert await directory.in_faction("merchants_guild") == []
    assert await directory.in_faction("payon_guild") == ["lina_baker"]
    assert await redis_client.hmget(keys.npc("lina_baker"), ["map", "faction_id", "mood"]) == [
        "payon",
        "payon_guild",
        "curious",
    ]


async def test_positions_kept_fresh_for_a_while_are_read_again_once_that_is_over(redis_client, keys):
    """As the gossip reads them: a map's positions are used again for a while, then read anew."""
    now = [100.0]
    directory = NpcDirectory(redis_client, keys, positions_fresh_for=2.0, clock=lambda: now[0])
    store = MemoryStore(redis_client, keys)
    await store.publish_npc(demo_profile("lina_baker", map="prontera", x=150, y=180, area=None, routine=[]), {})
    assert await directory.near("prontera", 150, 180, 10) == ["lina_baker"]

    await store.publish_npc(demo_profile("gareth_guard", map="prontera", x=152, y=180, area=None, routine=[]), {})
    now[0] += 1.9
    assert await directory.near("prontera", 150, 180, 10) == ["lina_baker"], "still fresh: not read again"
    assert await NpcDirectory(redis_client, keys).near("prontera", 150, 180, 10) == ["gareth_guard", "lina_baker"]
    now[0] += 0.1
    assert await directory.near("prontera", 150, 180, 10) == ["gareth_guard", "lina_baker"]


@pytest.mark.parametrize(
    ("scope", "message"),
    [
        ({"kind": "near", "map": "prontera", "x": 1}, "a near scope needs radius, y"),
        ({"kind": "map"}, "a map scope needs map"),
        ({"kind": "world", "faction": "guard"}, "a world scope takes no faction"),
        ({"kind": "npc", "npc_id": "Bad Id"}, "npc_id"),
        ({"kind": "near", "map": "prontera", "x": 1, "y": 1, "radius": 500}, "radius"),
    ],
)
def test_a_scope_names_what_is_wrong(scope, message):
    with pytest.raises(ValidationError, match=message):
        Scope.model_validate(scope)


def test_news_reaches_each_npc_under_an_id_of_its_own_with_text_the_game_can_show():
    news = WorldNews(
        news_id="economy-42",
        source="economy",
        scope=Scope(kind="map", map="prontera"),
        text="Herbs cost more: <b>orcs</b> burned the fields^000000",
        facts={"item_id": 507, "change_pct": 25},
    )
    event = news.event_for("lina_baker")
    assert (event.event_id, event.kind, event.facts) == (
        "economy-42:lina_baker",
        GameEventKind.WORLD_EVENT,
        {"item_id": 507, "change_pct": 25},
    )
    assert "<" not in event.text and "^" not in event.text


async def test_recipients_come_in_pages_by_id_and_skip_damaged_entries(redis_client, keys):
    store, directory = MemoryStore(redis_client, keys), NpcDirectory(redis_client, keys)
    for npc_id in ("cara", "abel", "bert", "dora", "eve_x"):
        await store.publish_npc(demo_profile("lina_baker").model_copy(update={"npc_id": npc_id}), {})
    await redis_client.hset(keys.map_npcs("prontera"), "Not An Id!", "1,1")  # damaged by hand
    scope = Scope(kind="map", map="prontera")
    first = await recipients_page(directory, scope, "", 2)
    second = await recipients_page(directory, scope, first.next_after or "", 2)
    last = await recipients_page(directory, scope, second.next_after or "", 2)
    assert (first.npc_ids, second.npc_ids, last.npc_ids) == (["abel", "bert"], ["cara", "dora"], ["eve_x"])
    assert last.next_after is None


async def test_the_world_file_s_npcs_are_listed_when_they_are_brought_to_life(
    time_skipping_env, redis_client, keys, task_queue
):
    world = load_world()
    settings = Settings(redis_key_prefix=keys.prefix, task_queue=task_queue)
    try:
        assert await load_world_into(time_skipping_env.client, settings, world, redis_client) == len(world.npcs)
        directory = NpcDirectory(redis_client, keys)
        assert set(await directory.everyone()) == {npc.npc_id for npc in world.npcs}
        assert "marlo_sailor" in await directory.on_map("izlude")
    finally:
        await end_lives(
            time_skipping_env.client, task_queue, {f"npc-{npc.npc_id}" for npc in world.npcs}, visibility=False
        )
