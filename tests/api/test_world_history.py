"""World memory over HTTP: a system's history by time range and limit, with 4xx naming the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aiworld.world.cycle import CycleOutcome, WorldChange
from aiworld.world.store import WorldStore


async def write_cycle(redis_client, keys, cycle_id: str, *whats: str) -> None:
    outcome = CycleOutcome(
        cycle_id=cycle_id,
        system="economy",
        at=datetime.now(UTC),
        cursor="",
        changes=[
            WorldChange(what=what, before="50", after="60", why="a shortage", text=f"{what} rose") for what in whats
        ],
    )
    assert await WorldStore(redis_client, keys).apply(outcome, "", 100)


async def test_the_history_of_a_system_in_a_range(api, redis_client, keys):
    await write_cycle(redis_client, keys, "c1", "price:507", "price:508")
    await redis_client.xadd(keys.world_history("economy"), {"note": "written by hand"})  # not an entry of ours
    await write_cycle(redis_client, keys, "c2", "price:509")
    everything = (await api.get("/ai/world/history", params={"system": "economy"})).json()
    assert [entry["what"] for entry in everything["entries"]] == ["price:507", "price:508", "price:509"]
    assert everything["entries"][0]["cycle"] == "c1" and everything["entries"][0]["why"] == "a shortage"
    newest = (await api.get("/ai/world/history", params={"system": "economy", "limit": 1})).json()
    assert [entry["what"] for entry in newest["entries"]] == ["price:509"]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    later = await api.get("/ai/world/history", params={"system": "economy", "since": future})
    assert later.status_code == 200 and later.json()["entries"] == []
    assert (await api.get("/ai/world/history", params={"system": "quests"})).json()["entries"] == []
    state = (await api.get("/ai/world/state")).json()
    assert state["economy"]["last_cycle"] == "c2" and "quests" in state


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"system": "weather"}, "system"),
        ({}, "system"),
        ({"system": "economy", "limit": 0}, "limit"),
        ({"system": "economy", "limit": 501}, "limit"),
        ({"system": "economy", "since": "yesterday"}, "since"),
        ({"system": "economy", "until": "2026-11-30T12:00:00"}, "until"),
        ({"system": "economy", "since": "2026-11-30T12:00:00Z", "until": "2026-11-30T11:00:00Z"}, "since"),
    ],
)
async def test_bad_queries_are_422_naming_the_field(api, params, field):
    answer = await api.get("/ai/world/history", params=params)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["field"] == field


async def test_the_history_needs_credentials(api):
    answer = await api.get("/ai/world/history", params={"system": "economy"}, headers={"X-API-Key": "guess"})
    assert answer.status_code == 401
