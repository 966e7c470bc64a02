"""The world feed on the real Redis: appended once per id, bounded, and read past damaged rows; the
activity that saves an outcome feeds it and counts it once however often it runs."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import redis.asyncio as redis
from temporalio.testing import ActivityEnvironment

from activities.npc_activities import NpcActivities, OutcomeWrite, RecordRequest
from aiworld.memory.store import MemoryStore
from aiworld.models import Decision, DecisionRecord, DecisionUsage, QueuedAction, SayAction, TradeAction
from aiworld.npc.offline_policy import OfflineDecisionMaker
from aiworld.ops.metrics import WorkerMetrics
from aiworld.store.action_queue import ActionQueue
from aiworld.store.keys import Keys
from aiworld.world.feed import WorldFeed
from tests.conftest import REDIS_URL, demo_profile
from tests.processes import free_port

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def entry(entry_id: str, text: str = "hi") -> dict:
    return {"type": "action", "id": entry_id, "npc_id": "lina_baker", "kind": "say", "text": text}


async def test_an_entry_is_appended_once_per_id(redis_client, keys):
    feed = WorldFeed(redis_client, keys)
    assert await feed.publish([entry("a"), entry("b")]) == {"a", "b"}
    assert await feed.publish([entry("a", "again"), entry("c")]) == {"c"}
    assert [item.entry["id"] for item in await feed.latest(10)] == ["a", "b", "c"]
    assert [item.entry["text"] for item in await feed.latest(10)][0] == "hi", "the first write stands"


async def test_the_feed_is_bounded(redis_client, keys):
    feed = WorldFeed(redis_client, keys, length=5)
    await feed.publish(entry(f"e{index}") for index in range(12))
    assert await redis_client.xlen(keys.feed()) == 5
    assert [item.entry["id"] for item in await feed.latest(10)] == [f"e{index}" for index in range(7, 12)]


async def test_damaged_or_foreign_rows_are_skipped_by_readers(redis_client, keys):
    feed = WorldFeed(redis_client, keys)
    start = await feed.last_id()
    await redis_client.xadd(keys.feed(), {"entry": "{not json"})
    await redis_client.xadd(keys.feed(), {"something": "else"})
    await redis_client.xadd(keys.feed(), {"entry": "[1, 2]"})
    await feed.publish([entry("good")])
    assert [item.entry["id"] for item in await feed.latest(10)] == ["good"]
    assert [item.entry["id"] for item in await feed.after(start, block_ms=1)] == ["good"]


async def test_a_blocking_read_returns_what_arrives_meanwhile(redis_client, keys):
    feed = WorldFeed(redis_client, keys)
    reader = redis.Redis.from_url(REDIS_URL, decode_responses=True)  # a blocked read holds its connection
    try:
        waiting = asyncio.create_task(WorldFeed(reader, keys).after("$", block_ms=30_000))
        sent = 0
        while not waiting.done():  # until the read has begun and one arrived
            sent += 1
            await feed.publish([entry(f"late-{sent}")])
            await asyncio.sleep(0.05)
        got = [item.entry["id"] for item in await waiting]
        assert got and got[0].startswith("late-")
    finally:
        await reader.aclose()


def outcome(sequence: int = 7) -> OutcomeWrite:
    profile = demo_profile("lina_baker")
    queued = [
        QueuedAction(
            action_id=f"lina_baker-{sequence}-0",
            npc_id="lina_baker",
            sequence=sequence,
            action=SayAction(text="Fresh bread!"),
            map=profile.map,
            npc_name=profile.name,
            created_at=NOW,
        )
    ]
    decision = DecisionRecord(
        sequence=sequence,
        decided_at=NOW,
        trigger="events",
        decision=Decision(
            actions=[SayAction(text="Fresh bread!"), TradeAction(item_id=999999, price=1)], mood="happy", reason="why"
        ),
        usage=DecisionUsage(provider="openai", latency_ms=120),
        queued_action_ids=[queued[0].action_id],
        rejections=["trade: item 999999 is not in the shop"],
    )
    record = RecordRequest(profile=profile, npc_fields={"mood": "happy", "action": "selling", "players_near": "[]"})
    return OutcomeWrite(record=record, actions=queued, decision=decision)


async def test_saving_an_outcome_twice_feeds_and_counts_it_once(redis_client, keys):
    metrics = WorkerMetrics()
    activities = NpcActivities(
        MemoryStore(redis_client, keys),
        ActionQueue(redis_client, keys),
        OfflineDecisionMaker(),
        WorldFeed(redis_client, keys),
        metrics,
    )
    write = outcome()
    environment = ActivityEnvironment()
    await environment.run(activities.save_outcome, write)
    await environment.run(activities.save_outcome, write)  # a retry, or a reset that runs it again
    fed = [item.entry for item in await WorldFeed(redis_client, keys).latest(10)]
    assert [(e["type"], e["id"]) for e in fed] == [("action", "lina_baker-7-0"), ("npc", "lina_baker-7-decided")]
    assert fed[0]["text"] == "Fresh bread!" and fed[1]["decided_by"] == "openai" and fed[1]["mood"] == "happy"
    sample = metrics.registry.get_sample_value
    assert sample("aiworld_decisions_total", {"trigger": "events", "provider": "openai"}) == 1
    assert sample("aiworld_actions_total", {"kind": "say", "outcome": "queued"}) == 1
    assert sample("aiworld_actions_total", {"kind": "trade", "outcome": "rejected"}) == 1
    assert sample("aiworld_decision_seconds_count", {"provider": "openai"}) == 1


async def test_the_queue_depth_sampler_outlives_a_store_that_does_not_answer(caplog):
    metrics = WorkerMetrics()
    metrics.queue_depth.set(3)
    nowhere = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    stop = asyncio.Event()
    try:
        with caplog.at_level(logging.WARNING, logger="aiworld.ops.metrics"):
            sampling = asyncio.create_task(metrics.sample_queue(nowhere, Keys(), stop))
            async with asyncio.timeout(30):
                while "queue depth not sampled" not in caplog.text:
                    await asyncio.sleep(0.05)
            stop.set()
            await sampling
    finally:
        await nowhere.aclose()
    assert metrics.registry.get_sample_value("aiworld_action_queue_depth") == 3, "the last value stays"
