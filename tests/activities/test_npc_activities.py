"""The NPC's store writes on the real Redis: news an NPC saves is news it is not told again."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime

import redis.asyncio as redis
from temporalio.testing import ActivityEnvironment

from activities.memory_activities import MemoryActivities
from activities.npc_activities import (
    ContextRequest,
    DecisionPlan,
    NpcActivities,
    OutcomeWrite,
    RecordRequest,
    ReplyPlan,
    outcome_of,
)
from aiworld.memory.meetings import MeetingRequest
from aiworld.memory.store import MemoryStore
from aiworld.models import Decision, DecisionResult, GameEvent, PlayerRef, TalkTurn
from aiworld.npc import experience
from aiworld.npc.offline_policy import OfflineDecisionMaker
from aiworld.npc.priority import PriorityGate, Turn
from aiworld.ops.worker import STORE_SOCKET_TIMEOUT
from aiworld.store.action_queue import ActionQueue
from aiworld.world.feed import WorldFeed
from tests.activities.test_memory_activities import neighbour
from tests.conftest import demo_profile
from tests.workflows.test_faults import llm_router

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


GIVER = PlayerRef(char_id=150031, name="Giver", level=20)


def npc_activities(store: redis.Redis, keys, brain=None) -> NpcActivities:
    memory = MemoryStore(store, keys)
    return NpcActivities(memory, ActionQueue(store, keys), brain or OfflineDecisionMaker(), WorldFeed(store, keys))


def gift_plan(sequence: int = 7) -> DecisionPlan:
    """A player's gift to the baker, who stands near: the offline policy thanks them."""
    profile = demo_profile("lina_baker")
    gift = GameEvent(event_id=f"gift-{sequence}", kind="item_received", player=GIVER, item_id=512, amount=3)
    request = ContextRequest(
        profile=profile,
        now=NOW,
        sequence=sequence,
        mood="content",
        activity="baking",
        events=[gift],
        players_near=[GIVER],
    )
    return DecisionPlan(request=request, trigger="events", involved=[GIVER.char_id], players_near_json="[]")


async def test_a_decision_made_and_saved_at_once_writes_what_it_records_once(redis_client, keys):
    npcs = npc_activities(redis_client, keys)
    plan = gift_plan()

    done = await ActivityEnvironment().run(npcs.decide_and_save, plan)
    again = await ActivityEnvironment().run(npcs.decide_and_save, plan)  # a reset runs it again

    assert done.decided is not None and done.unsaved is None and done.context is None
    assert done.decided.event_ids == ["gift-7"] and done.decided.queued_action_ids
    # Run again it recalls what the first run wrote, but writes under the same ids: nothing twice.
    assert again.decided is not None and again.decided.queued_action_ids == done.decided.queued_action_ids
    queued = [action.action_id for action in await ActionQueue(redis_client, keys).pending("lina_baker")]
    assert queued == done.decided.queued_action_ids, "each action queued once"
    store = MemoryStore(redis_client, keys)
    remembered = {memory.memory_id for memory, _ in await store.load("lina_baker", await store.all_ids("lina_baker"))}
    assert set(done.lived) == remembered and "7-event-0" in remembered
    assert await store.relationships("lina_baker", ["player:150031"]) == {"player:150031": 5}


async def on_a_dead_store(keys, activity: str, argument):
    """Run one NPC activity on a Redis client whose port nothing listens on: every call is
    refused, at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = redis.Redis(port=port, socket_timeout=STORE_SOCKET_TIMEOUT, socket_connect_timeout=STORE_SOCKET_TIMEOUT)
    try:
        return await ActivityEnvironment().run(getattr(npc_activities(down, keys), activity), argument)
    finally:
        await down.aclose()


async def test_writes_the_store_refuses_come_back_unsaved_and_are_written_as_promised(redis_client, keys):
    done = await on_a_dead_store(keys, "decide_and_save", gift_plan(8))

    assert done.degraded and done.store_error and done.unsaved is not None
    assert done.decided is not None and done.decided.queued_action_ids, "decided without memories"
    # Later, with the store back, the workflow saves what it kept: exactly what was recorded.
    await ActivityEnvironment().run(npc_activities(redis_client, keys).save_outcome, done.unsaved)
    queued = [action.action_id for action in await ActionQueue(redis_client, keys).pending("lina_baker")]
    assert queued == done.decided.queued_action_ids
    store = MemoryStore(redis_client, keys)
    assert set(done.lived) == set(await store.all_ids("lina_baker"))


async def test_an_llm_decision_or_reply_leaves_the_activity_with_its_context_and_nothing_written(redis_client, keys):
    router = llm_router(redis_client, keys)
    try:
        npcs = npc_activities(redis_client, keys, router)
        decision = await ActivityEnvironment().run(npcs.decide_and_save, gift_plan(9))
        reply = await ActivityEnvironment().run(npcs.reply_and_save, talk_plan(14))
    finally:
        await router.aclose()

    assert decision.decided is None and decision.unsaved is None and decision.context is not None
    assert decision.context.events[0].event_id == "gift-9"
    assert reply.reply is None and reply.unsaved is None and reply.context is not None
    assert reply.context.turn.turn_id == "turn-14"
    assert await ActionQueue(redis_client, keys).pending("lina_baker") == []
    assert await MemoryStore(redis_client, keys).all_ids("lina_baker") == []


def talk_plan(sequence: int = 11, *, write: bool = True) -> ReplyPlan:
    turn = TalkTurn(turn_id=f"turn-{sequence}", player=GIVER, text="Any fresh bread today?")
    request = ContextRequest(
        profile=demo_profile("lina_baker"),
        now=NOW,
        sequence=sequence,
        mood="content",
        activity="baking",
        players_near=[GIVER],
        about="player:150031",
        turn=turn,
    )
    return ReplyPlan(request=request, turn_id=turn.turn_id, write=write)


async def test_a_line_answered_and_saved_at_once_is_queued_once_with_the_score_it_made(redis_client, keys):
    npcs = npc_activities(redis_client, keys)

    done = await ActivityEnvironment().run(npcs.reply_and_save, talk_plan())
    await ActivityEnvironment().run(npcs.reply_and_save, talk_plan())  # a reset runs it again

    assert done.reply is not None and done.reply.text and done.unsaved is None and done.context is None
    queued = await ActionQueue(redis_client, keys).pending("lina_baker")
    assert [action.action_id for action in queued] == ["lina_baker-talk-turn-11"]
    assert queued[0].action.text == done.reply.text
    score = await MemoryStore(redis_client, keys).relationships("lina_baker", ["player:150031"])
    assert done.reply.relationship == score["player:150031"] == done.reply.relationship_change
    assert set(done.lived) == {"11-heard", "11-replied"}


async def test_a_line_the_store_cannot_take_is_answered_and_its_writes_come_back(redis_client, keys):
    refused = await on_a_dead_store(keys, "reply_and_save", talk_plan(12))
    # Known to be down: the writes are not even tried, on a store that would take them.
    untried = await ActivityEnvironment().run(
        npc_activities(redis_client, keys).reply_and_save, talk_plan(13, write=False)
    )

    for done in (refused, untried):
        assert done.reply is not None and done.reply.text and done.unsaved is not None and done.store_error
        assert done.reply.relationship == 0, "no score without the store's answer"
    assert refused.degraded, "answered without memories"
    assert await ActionQueue(redis_client, keys).pending("lina_baker") == []
    await ActivityEnvironment().run(npc_activities(redis_client, keys).save_outcome, refused.unsaved)
    queued = await ActionQueue(redis_client, keys).pending("lina_baker")
    assert [action.action_id for action in queued] == ["lina_baker-talk-turn-12"]


def saved_decision(trigger: str, sequence: int) -> OutcomeWrite:
    """The writes of a decision made in workflow code or by an LLM's activity, by what caused it."""
    plan = gift_plan(sequence).model_copy(update={"trigger": trigger})
    decision = Decision(activity="baking", mood="content", reason="the oven is hot", actions=[])
    return outcome_of(plan, DecisionResult(decision=decision), [], NOW, 2.5).write


async def test_with_the_background_slots_taken_routine_writes_wait_and_a_talk_turns_writes_do_not(redis_client, keys):
    gate = PriorityGate(slots=1, max_wait=60)
    memory = MemoryStore(redis_client, keys)
    npcs = NpcActivities(
        memory, ActionQueue(redis_client, keys), OfflineDecisionMaker(), WorldFeed(redis_client, keys), gate=gate
    )
    busy = asyncio.Event()
    taken = asyncio.Event()

    async def background_work() -> None:
        async with gate.turn(Turn.EVENT):
            taken.set()
            await busy.wait()

    holder = asyncio.create_task(background_work())
    await taken.wait()
    routine = asyncio.create_task(ActivityEnvironment().run(npcs.save_outcome, saved_decision("routine", 21)))
    async with asyncio.timeout(10):
        while gate.waiting != 1:
            await asyncio.sleep(0)

    await ActivityEnvironment().run(npcs.save_outcome, saved_decision("talk", 22))  # an LLM replied

    feed = await WorldFeed(redis_client, keys).latest(10)
    assert [item.entry["sequence"] for item in feed] == [22]
    assert not routine.done() and gate.waiting == 1
    busy.set()
    await asyncio.gather(holder, routine)
    feed = await WorldFeed(redis_client, keys).latest(10)
    assert [item.entry["sequence"] for item in feed] == [22, 21]
