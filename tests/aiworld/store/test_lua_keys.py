"""Every Lua script declares every key it touches (DragonflyDB refuses undeclared keys by default).

Redis itself does not check this, so the scripts run here on the real Redis with each
`redis.call` routed through a guard that fails on a key missing from KEYS, while the real
action queue, memory store and token bucket do their work.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as redis

from aiworld.config import BudgetLimits, BudgetSettings, CoordinatorSettings, MemorySettings
from aiworld.llm.bucket import TokenBucket
from aiworld.llm.governor import BudgetExhausted, BudgetGovernor
from aiworld.memory.embeddings import local_embedding, to_text
from aiworld.memory.gossip import Gossip
from aiworld.memory.store import MemoryStore
from aiworld.models import GameEvent, GameEventKind, Memory, PlayerRef, QueuedAction, SayAction
from aiworld.store.action_queue import ActionQueue
from aiworld.world.cycle import CycleOutcome, CycleWrite, WorldChange
from aiworld.world.feed import WorldFeed
from aiworld.world.routing import WorldInbox
from aiworld.world.store import WorldStore
from tests.activities.test_memory_activities import neighbour
from tests.conftest import REDIS_URL

PROJECT = Path(__file__).resolve().parents[3]

# Commands the scripts use, all of which take their key as the first argument.
GUARD = """
local declared = {}
for _, key in ipairs(KEYS) do declared[key] = true end
local function guarded_call(command, key, ...)
  if not declared[key] then
    return redis.error_reply('undeclared key ' .. tostring(key) .. ' in ' .. command)
  end
  return redis.call(command, key, ...)
end
"""


class KeyCheckingRedis(redis.Redis):
    """Registers every script with the guard in front of each of its `redis.call`s."""

    sources: list[str]

    def register_script(self, script):
        self.sources = [*getattr(self, "sources", []), script]
        return super().register_script(GUARD + re.sub(r"redis\.call\(", "guarded_call(", script))


@pytest.fixture
async def checking_client(keys):
    client = KeyCheckingRedis.from_url(REDIS_URL, decode_responses=True)
    yield client
    async for key in client.scan_iter(match=f"{keys.prefix}*", count=500):
        await client.delete(key)
    await client.aclose()


def test_the_guard_sees_every_script_of_the_project():
    registered = sum(path.read_text().count("register_script(") for path in PROJECT.glob("aiworld/**/*.py"))
    others = [
        path
        for pattern in ("api/**/*.py", "bridge/**/*.py", "activities/**/*.py", "workflows/**/*.py")
        for path in PROJECT.glob(pattern)
        if "register_script(" in path.read_text()
    ]
    # Seven in the action queue and memory store, one in the token bucket, one in the world store,
    # one in the world systems' inboxes, one in the world feed, three in the budget governor, one
    # in the gossip; none elsewhere.
    assert registered == 15 and others == []


async def test_the_guard_refuses_an_undeclared_key(checking_client, keys):
    sneaky = checking_client.register_script("return redis.call('GET', ARGV[1])")
    with pytest.raises(redis.ResponseError, match="undeclared key"):
        await sneaky(keys=[], args=[f"{keys.prefix}elsewhere"])


async def test_queue_memory_and_bucket_scripts_declare_their_keys(checking_client, keys):
    now = datetime(2026, 11, 29, 12, tzinfo=UTC)
    queue = ActionQueue(checking_client, keys)
    for index in range(3):
        await queue.enqueue(
            QueuedAction(
                action_id=f"lina_baker-1-{index}",
                npc_id="lina_baker",
                sequence=1,
                action=SayAction(text="Fresh bread!"),
                map="prontera",
                npc_name="Lina",
                created_at=now,
            )
        )
    claimed = await queue.claim(limit=2, now=now + timedelta(seconds=1))
    assert len(claimed) == 2
    assert len(await queue.claim(npc_id="lina_baker", now=now + timedelta(seconds=1))) == 1
    assert await queue.complete(claimed[0].action.action_id, "done", now=now)
    # A lease that ran out is offered again, through the same script.
    assert len(await queue.claim(now=now + timedelta(minutes=5))) == 2

    memory = MemoryStore(checking_client, keys)
    await memory.remember("lina_baker", Memory(memory_id="1-heard", kind="conversation", text="hi", created_at=now))
    assert await memory.adjust_relationship("lina_baker", "player:1", 5, "c1", "gift") == 5
    loaded = await memory.load("lina_baker", ["1-heard", "never-remembered"])
    assert [found.memory_id for found, vector in loaded if vector] == ["1-heard"]
    assert [item.memory.memory_id for item in await memory.search("lina_baker", now=now, query="hi")] == ["1-heard"]
    # A memory stored by an older version (its cue and vector in its record) is moved on recall.
    older = Memory(memory_id="0-older", kind="conversation", text="hello", created_at=now - timedelta(hours=1))
    await memory.remember("lina_baker", older)
    await checking_client.hdel(keys.memory_cues("lina_baker"), "0-older")
    await checking_client.hset(keys.memory("lina_baker", "0-older"), "vec", to_text(local_embedding("hello")))
    found = await memory.search("lina_baker", now=now, query="hello")
    assert [item.memory.memory_id for item in found] == ["0-older", "1-heard"]
    await memory.forget("lina_baker", ["0-older"])

    bucket = TokenBucket(checking_client, keys)
    await bucket.acquire("openai", 60, 10_000, 100)

    inbox = WorldInbox(checking_client, keys, CoordinatorSettings())
    kill = GameEvent(event_id="ev-1", kind="player_killed_monster", player=PlayerRef(char_id=1, name="Aria"))
    assert await inbox.route(kill, map_name="prontera") == ["quests"]
    assert await inbox.route(kill, map_name="prontera") == []

    feed = WorldFeed(checking_client, keys)
    assert await feed.publish([{"id": "lina_baker-1-0", "type": "action"}]) == {"lina_baker-1-0"}

    # A greeting claims the pair's meeting key: the same meeting run again is planned the same,
    # the next one within the interval says nothing.
    gossip = Gossip(checking_client, keys, MemorySettings())
    speaker, listener = neighbour("speaker", 146), neighbour("listener", 148)
    for profile in (speaker, listener):
        await memory.publish_npc(profile, {})
    first = await gossip.plan(speaker, 1, now, [])
    assert [remark.event.event_id for remark in first.remarks] == ["greet-speaker-listener-1"]
    assert (await gossip.plan(speaker, 1, now, [])).remarks == first.remarks
    assert (await gossip.plan(speaker, 2, now, [])).remarks == []
    assert len(checking_client.sources) == 11


async def test_the_world_cycle_write_declares_its_keys(checking_client, keys):
    """Every kind of write a cycle makes: state, factions, quests and their index, events handed to
    another system's inbox, history, the guard set and the stored outcome."""
    now = datetime(2026, 11, 29, 12, tzinfo=UTC)
    world = WorldStore(checking_client, keys)
    handed = GameEvent(event_id="done-1", kind=GameEventKind.WORLD_EVENT, text="a quest was done")
    outcome = CycleOutcome(
        cycle_id="world-quests-1",
        system="quests",
        at=now,
        cursor="1-0",
        changes=[WorldChange(what="quest:q1", after="completed", why="done")],
        write=CycleWrite(
            state={"open_quests": "1"},
            state_deleted=["old"],
            factions={"church": {"standing:1": "5", "conflict:bandits": ""}},
            quests={"q1": {"status": "completed"}, "q2": {"status": "offered"}},
            open_quests={"q2": now.timestamp() + 60},
            closed_quests=["q1"],
            forwarded={"politics": [handed]},
        ),
    )
    assert await world.apply(outcome, "", 100)
    assert not await world.apply(outcome, "", 100)
    assert len(checking_client.sources) == 1


async def test_the_budget_governors_scripts_declare_their_keys(checking_client, keys):
    budget = BudgetSettings(overall=BudgetLimits(calls_per_minute=2), tiers={"routine": BudgetLimits(money_per_day=5)})
    governor = BudgetGovernor(budget, checking_client, keys)
    reservation = await governor.reserve("routine", 1000, 1.0)
    await governor.settle(reservation, 200, 0.2)
    await governor.reserve("routine", 1000, 1.0)
    with pytest.raises(BudgetExhausted, match="all tiers would pass calls/minute 2"):
        await governor.reserve("routine", 1000, 1.0)
    assert (await governor.standing("routine")).rung.label == "hard_cap"
    assert len(checking_client.sources) == 3
