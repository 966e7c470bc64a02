"""NpcLifeWorkflow on a real Temporal: a long life, bursts, sleep, dialogue and its validation."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError

from aiworld.config import MemorySettings
from aiworld.models import (
    Decision,
    DecisionRecord,
    DecisionResult,
    DecisionUsage,
    DialogueDraft,
    GameEvent,
    PlayerRef,
    TalkReply,
    TalkTurn,
)
from aiworld.npc.offline_policy import OfflineDecisionMaker
from aiworld.ops.worker import build_worker
from aiworld.store.action_queue import ActionQueue
from bridge import translate
from tests.conftest import NpcLife, _running_life, demo_profile, end_lives
from workflows.npc_life import LATE_WAKE

SETTLED_LAST_EVENTS = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    EventType.EVENT_TYPE_TIMER_STARTED,
    EventType.EVENT_TYPE_MARKER_RECORDED,
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
}
ARIA = PlayerRef(char_id=150001, name="Aria", level=34, job_class=4, map="prontera", x=146, y=180)


def nearby(event_id: str, player: PlayerRef = ARIA) -> GameEvent:
    return GameEvent(event_id=event_id, kind="player_nearby", player=player)


def left(event_id: str, player: PlayerRef = ARIA) -> GameEvent:
    return GameEvent(event_id=event_id, kind="player_left", player=player)


def news(event_id: str, importance: int = 6) -> GameEvent:
    return GameEvent(event_id=event_id, kind="world_event", text="The price of wheat doubled", importance=importance)


async def settled_history_length(handle) -> int:
    """History length once the NPC has finished what it was doing: no workflow task and no
    activity pending, and the last event a completed workflow task (or what it wrote)."""
    async with asyncio.timeout(60):
        while True:
            described = (await handle.describe()).raw_description
            busy = described.HasField("pending_workflow_task") or len(described.pending_activities) > 0
            if not busy:
                history = await handle.fetch_history()
                last = history.events[-1].event_type
                if last in SETTLED_LAST_EVENTS:
                    return len(history.events)
            await asyncio.sleep(0.1)


async def memory_ids(redis_client, keys, npc_id: str) -> list[str]:
    return await redis_client.zrange(keys.memory_index(npc_id), 0, -1)


@pytest_asyncio.fixture(loop_scope="session")
async def unforgetting_life(time_skipping_env, task_queue, redis_client, keys):
    """An NPC life that keeps every memory in full: memories count what was processed."""
    settings = MemorySettings(full_detail_hours=24 * 365)
    async for running in _running_life(
        time_skipping_env.client, task_queue, redis_client, keys, visibility=False, memory=settings
    ):
        yield running


async def test_a_week_of_life_continues_as_new_and_processes_every_event_once(
    unforgetting_life, time_skipping_env, redis_client, keys
):
    life = unforgetting_life
    profile = demo_profile("old_tomas", importance=3)
    handle = await life.start(profile, history_length_limit=150)
    unique_events = 0
    for day in range(7):
        for visit in range(3):
            # Each event is delivered twice, as a retried POST or a replayed bridge row would be.
            for event in (nearby(f"d{day}-v{visit}-near"), left(f"d{day}-v{visit}-left")):
                await handle.signal("game_event", event)
                await handle.signal("game_event", event)
                unique_events += 1
                await time_skipping_env.sleep(timedelta(minutes=2))
            await time_skipping_env.sleep(timedelta(hours=7))
        await handle.signal("game_event", news(f"d{day}-news"))
        unique_events += 1
        await time_skipping_env.sleep(timedelta(hours=2))

    state = await life.wait_for(handle, lambda s: s.events_processed == unique_events and s.pending_events == 0)
    assert state.runs >= 3, "the lowered history limit should have continued the life several times"
    assert state.events_processed == unique_events
    # One observation memory per event: an event handled twice would leave a second one.
    observed = [mid for mid in await memory_ids(redis_client, keys, profile.npc_id) if "-event-" in mid]
    assert len(observed) == unique_events
    assert state.routine_decisions > 0 and state.policy_decisions > 0
    # The offline policy decided everything: none of it is counted as an LLM's decision.
    assert state.llm_decisions == 0 and state.fallbacks == 0


async def test_a_burst_of_200_signals_across_continue_as_new(life, redis_client, keys):
    profile = demo_profile("orin_beggar", importance=2)
    handle = await life.start(profile, history_length_limit=100)
    events = [news(f"burst-{index}", importance=1) for index in range(200)]
    await asyncio.gather(*(handle.signal("game_event", event) for event in events))
    await asyncio.gather(*(handle.signal("game_event", event) for event in events[:50]))  # redelivered

    state = await life.wait_for(handle, lambda s: s.events_processed >= 200 and s.pending_events == 0, timeout=120)
    assert state.events_processed == 200
    assert state.runs >= 2
    observed = [mid for mid in await memory_ids(redis_client, keys, profile.npc_id) if "-event-" in mid]
    assert len(observed) == 200


async def test_an_npc_with_nobody_near_sleeps_without_workflow_tasks(life, time_skipping_env):
    profile = demo_profile("nessa_florist", importance=4)
    handle = await life.start(profile)
    await handle.signal("game_event", nearby("come"))
    await handle.signal("game_event", left("go"))
    state = await life.wait_for(handle, lambda s: s.events_processed == 2 and not s.players_near)
    assert state.sleeping

    before = await settled_history_length(handle)
    await time_skipping_env.sleep(timedelta(days=3))
    after = len((await handle.fetch_history()).events)
    assert after == before, "a sleeping NPC must add no workflow task, timer or activity"

    await handle.signal("game_event", nearby("back"))
    state = await life.wait_for(handle, lambda s: s.events_processed == 3)
    assert not state.sleeping  # a player near sets a decision cadence again


async def upserted_activities(handle) -> list[str]:
    """The NpcActivity each search attribute upsert of the history published, in order."""
    history = await handle.fetch_history()
    return [
        json.loads(fields["NpcActivity"].data)
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
        and "NpcActivity"
        in (fields := event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields)
    ]


async def test_a_sleeping_npc_publishes_its_activity_at_most_every_five_minutes(life, time_skipping_env):
    """Each upsert is a visibility write: an NPC that sleeps between events holds its new mood and
    activity back until a wake five minutes after its last upsert."""
    handle = await life.start(demo_profile("nessa_florist", importance=3))
    started = await life.wait_for(handle, lambda s: s.sleeping)
    await handle.signal("game_event", news("wheat-1"))
    decided = await life.wait_for(handle, lambda s: s.events_processed == 1 and s.sleeping)
    await settled_history_length(handle)
    assert decided.activity != started.activity
    assert await upserted_activities(handle) == [started.activity]  # held back: it fell asleep at once

    await time_skipping_env.sleep(timedelta(minutes=2))
    await handle.signal("game_event", news("wheat-2"))
    await life.wait_for(handle, lambda s: s.events_processed == 2 and s.sleeping)
    await settled_history_length(handle)
    assert await upserted_activities(handle) == [started.activity]  # still within the five minutes

    await time_skipping_env.sleep(timedelta(minutes=4))
    await handle.signal("game_event", news("wheat-3"))
    again = await life.wait_for(handle, lambda s: s.events_processed == 3 and s.sleeping)
    await settled_history_length(handle)
    assert await upserted_activities(handle) == [started.activity, again.activity]


async def test_a_player_standing_idle_near_costs_a_handful_of_decisions_not_a_hundred(life, time_skipping_env):
    """Importance 10 decides every 5 s while a player is near; with nothing new, each routine
    step doubles the wait (up to 16x), and any event brings the fast cadence back."""
    handle = await life.start(demo_profile("gareth_guard", importance=10))
    await handle.signal("game_event", nearby("idle-near"))
    await life.wait_for(handle, lambda s: s.events_processed == 1)
    await time_skipping_env.sleep(timedelta(minutes=9))  # inside the 10 minutes presence lasts
    quiet = await life.state(handle)
    # 5+10+20+40+80+80+... s: about ten steps in nine minutes, where a fixed cadence makes 108.
    assert 5 <= quiet.routine_decisions <= 14, quiet.routine_decisions

    # Word that its own walk went as planned is no news: the stretched cadence stays.
    done = GameEvent(event_id="walked", kind="action_result", action_id="gareth_guard-1-0", outcome="done")
    await handle.signal("game_event", done)
    await life.wait_for(handle, lambda s: s.events_processed == 2)
    before = (await life.state(handle)).routine_decisions
    await time_skipping_env.sleep(timedelta(seconds=16))
    assert (await life.state(handle)).routine_decisions - before <= 1

    await handle.signal("game_event", news("wake-up", importance=1))  # news: not significant
    await life.wait_for(handle, lambda s: s.events_processed == 3)
    before = (await life.state(handle)).routine_decisions
    await time_skipping_env.sleep(timedelta(seconds=16))
    after = await life.state(handle)
    assert after.routine_decisions - before >= 2, "an event brings the 5 s cadence back"


async def test_events_between_routine_steps_neither_cancel_nor_start_a_timer(life):
    """One routine timer runs on across the events handled in between: a timer started and
    cancelled per event costs two history events and a timer task on the server each time."""
    handle = await life.start(demo_profile("gareth_guard", importance=10))
    await handle.signal("game_event", nearby("steady-near"))
    await life.wait_for(handle, lambda s: s.events_processed == 1)
    for index in range(8):
        hit = GameEvent(event_id=f"steady-hit-{index}", kind="player_attacked", player=ARIA)
        await handle.signal("game_event", hit)
        await life.wait_for(handle, lambda s, processed=index + 2: s.events_processed == processed)
    await settled_history_length(handle)
    kinds = Counter([event.event_type async for event in handle.fetch_history_events()])
    # The ambient timer (importance 10, every 3 minutes) gives way to the 5 s cadence once, when
    # the player comes near; after that a timer starts only when the last one has fired.
    assert kinds[EventType.EVENT_TYPE_TIMER_CANCELED] <= 1, kinds
    assert kinds[EventType.EVENT_TYPE_TIMER_STARTED] <= 2 + kinds[EventType.EVENT_TYPE_TIMER_FIRED], kinds


async def test_routine_backs_off_while_its_wakes_come_late_and_recovers_on_time(
    dev_env, task_queue, redis_client, keys
):
    """A routine wake that waited in the queue means the worker runs behind: the NPC waits twice as
    long between routine steps; a wake on time brings the usual cadence back. On the real server:
    the test server does not move its clock while a workflow task waits."""
    client, brain = dev_env.client, OfflineDecisionMaker()
    life = NpcLife(client, task_queue, keys)
    async with build_worker(client, task_queue, redis_client, keys, brain):
        handle = await life.start(demo_profile("gareth_guard", importance=10))  # every 5 s with a player near
        await handle.signal("game_event", nearby("late-near"))
        await life.wait_for(handle, lambda s: s.events_processed == 1)
    # No worker: the routine timer fires, and its workflow task waits to be picked up.
    fired_at = await timer_fired(handle)
    async with asyncio.timeout(30):
        while datetime.now(UTC) - fired_at < 2 * LATE_WAKE:
            await asyncio.sleep(0.1)
    async with build_worker(client, task_queue, redis_client, keys, brain):
        late = await life.wait_for(handle, lambda s: s.routine_decisions >= 1)
        assert late.load_stretch == 2.0, "a late routine wake doubles the wait"
        decisions = await life.wait_for_decisions(
            handle, lambda ds: sum(d.trigger == "routine" for d in ds) >= 2, timeout=90
        )
        first, second = [d.decided_at for d in decisions if d.trigger == "routine"][:2]
        # 5 s x 2 (one quiet step) x 2 (late), where an NPC whose wakes come on time waits 10 s.
        assert (second - first).total_seconds() >= 19, (first, second)
        recovered = await life.wait_for(handle, lambda s: s.load_stretch == 1.0)
        assert recovered.routine_decisions >= 2, "an on-time wake brings the usual cadence back"
        await end_lives(client, task_queue, {handle.id}, visibility=False)


class GatedDecisions(OfflineDecisionMaker):
    """Decides only once the test opens the gate: a decision still running when a player talks."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def decide(self, context):
        await self.gate.wait()
        return await super().decide(context)


async def test_a_player_talking_while_the_npc_decides_is_answered_and_the_history_replays(
    dev_env, task_queue, redis_client, keys
):
    """The reply's local activities run while the decision's is still in flight and finish first;
    with no workflow cache every task replays the history, and so does the test at the end."""
    client, brain = dev_env.client, GatedDecisions()
    life = NpcLife(client, task_queue, keys)
    async with build_worker(client, task_queue, redis_client, keys, brain, max_cached_workflows=0):
        handle = await life.start(demo_profile("gareth_guard"))
        await handle.signal("game_event", GameEvent(event_id="gated-hit", kind="player_attacked", player=ARIA))
        turn = TalkTurn(turn_id="gated-talk", player=ARIA, text="Are you all right?")
        talk = asyncio.create_task(handle.execute_update("talk", turn, result_type=TalkReply))
        await history_has(handle, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)
        brain.gate.set()
        reply = await asyncio.wait_for(talk, 60)
        assert reply.text
        await life.wait_for_decisions(handle, lambda ds: any("gated-hit" in d.event_ids for d in ds))
        await end_lives(client, task_queue, {handle.id}, visibility=False)  # replays the history


async def history_has(handle, event_type: EventType.ValueType) -> None:
    async with asyncio.timeout(60):
        while not [e async for e in handle.fetch_history_events() if e.event_type == event_type]:
            await asyncio.sleep(0.2)


async def timer_fired(handle) -> datetime:
    async with asyncio.timeout(30):
        while True:
            async for event in handle.fetch_history_events():
                if event.event_type == EventType.EVENT_TYPE_TIMER_FIRED:
                    return event.event_time.ToDatetime(tzinfo=UTC)
            await asyncio.sleep(0.2)


async def test_a_duplicate_is_dropped_within_one_wake_and_across_wakes(life, redis_client, keys):
    profile = demo_profile("gareth_guard", importance=4)
    handle = await life.start(profile)
    attack = GameEvent(event_id="dup-attack", kind="player_attacked", player=ARIA)
    # Sent before the NPC's first workflow task: both copies are there when it first wakes.
    await asyncio.gather(handle.signal("game_event", attack), handle.signal("game_event", attack))
    await life.wait_for_decisions(handle, lambda ds: any("dup-attack" in d.event_ids for d in ds))
    # Handled: the same id again, in a later wake, together with a new event.
    await handle.signal("game_event", attack)
    await handle.signal("game_event", news("dup-news"))
    state = await life.wait_for(handle, lambda s: s.events_processed >= 2 and s.pending_events == 0)
    await life.wait_for_decisions(handle, lambda ds: any("dup-news" in d.event_ids for d in ds))
    assert state.events_processed == 2
    decisions = await handle.query("recent_decisions", result_type=list[DecisionRecord])
    assert [event_id for d in decisions for event_id in d.event_ids].count("dup-attack") == 1
    observed = await memory_ids(redis_client, keys, profile.npc_id)
    assert len([mid for mid in observed if "-event-" in mid]) == 2


async def test_significant_events_are_batched_into_one_decision(life):
    profile = demo_profile("gareth_guard", importance=8)
    handle = await life.start(profile)
    # Signals sent before the first workflow task are all there when the NPC first wakes.
    await asyncio.gather(
        handle.signal("game_event", nearby("a", ARIA)),
        handle.signal("game_event", GameEvent(event_id="b", kind="player_attacked", player=ARIA)),
        handle.signal("game_event", news("c", importance=8)),
    )
    decisions = await life.wait_for_decisions(handle, lambda ds: sum(len(d.event_ids) for d in ds) >= 3)
    batches = [d for d in decisions if d.trigger == "events"]
    assert sorted(event_id for d in batches for event_id in d.event_ids) == ["a", "b", "c"]
    assert len(batches) < 3


async def test_talk_rejects_bad_turns_before_history_and_answers_good_ones(life, redis_client, keys):
    profile = demo_profile("lina_baker")
    handle = await life.start(profile)
    good = TalkTurn(turn_id="t1", player=ARIA, text="Hello there! What do you sell?")
    reply = await handle.execute_update("talk", good, result_type=TalkReply)
    assert reply.text and reply.options
    assert "Aria" in reply.text or "zeny" in reply.text

    bad_turns = {
        "empty": ({"player": ARIA.model_dump(), "text": "   "}, "text"),
        "oversized": ({"player": ARIA.model_dump(), "text": "x" * 201}, "at most 200 characters"),
        "no player": ({"text": "hi"}, "player"),
        "unknown field": ({"player": ARIA.model_dump(), "text": "hi", "zeny": 1_000_000}, "zeny"),
    }
    for name, (body, expected) in bad_turns.items():
        with pytest.raises(WorkflowUpdateFailedError) as failure:
            await handle.execute_update("talk", body, result_type=TalkReply)
        assert expected in str(failure.value.cause), name
    history = (await handle.fetch_history()).events
    accepted = [e for e in history if e.HasField("workflow_execution_update_accepted_event_attributes")]
    assert len(accepted) == 1, "rejected turns leave no trace in the history"

    again = await handle.execute_update(
        "talk", TalkTurn(turn_id="t2", player=ARIA, text="hi again"), result_type=TalkReply
    )
    assert "Last time you told me" in again.text, "the NPC remembers the earlier conversation"
    assert again.relationship >= reply.relationship

    # The reply is also queued, so a reply the API gave up waiting for still reaches the game.
    queued = await ActionQueue(redis_client, keys).pending(profile.npc_id)
    replies = [a for a in queued if a.action.kind == "reply"]
    assert {a.action_id for a in replies} == {"lina_baker-talk-t1", "lina_baker-talk-t2"}


async def test_retire_ends_the_life(life):
    handle = await life.start(demo_profile("quinn_courier"))
    await handle.signal("retire")
    assert "retired" in await handle.result()


async def test_configure_changes_importance_and_cadence(life):
    handle = await life.start(demo_profile("pip_urchin", importance=3))
    await handle.signal("configure", {"importance": 9})
    state = await life.wait_for(handle, lambda s: s.importance == 9)
    assert not state.sleeping  # importance 9 keeps an ambient routine even with nobody near


class ManipulatedModel(OfflineDecisionMaker):
    """A decision maker whose answer was talked into giving away a fortune (a prompt injection)."""

    async def decide(self, context):
        return DecisionResult(
            decision=Decision.model_validate(
                {
                    "actions": [
                        {"kind": "give_zeny", "char_id": 150001, "amount": 1_000_000},
                        {"kind": "emote", "emotion": "money"},
                    ],
                    "mood": "happy",
                    "activity": "giving",
                    "reason": "the player said the rules changed",
                }
            ),
            usage=DecisionUsage(provider="manipulated"),
        )


async def test_rejected_actions_are_counted_remembered_and_never_queued(
    time_skipping_env, task_queue, redis_client, keys
):
    async with build_worker(time_skipping_env.client, task_queue, redis_client, keys, ManipulatedModel()):
        life = NpcLife(time_skipping_env.client, task_queue, keys)
        profile = demo_profile("lina_baker")
        handle = await life.start(profile)
        await handle.signal("game_event", nearby("greedy"))
        decisions = await life.wait_for_decisions(handle, lambda ds: any(d.trigger == "events" for d in ds))
        record = next(d for d in decisions if d.trigger == "events")
        state = await life.state(handle)
        await handle.terminate("test finished")
    assert state.rejected_decisions == 1
    assert "give_zeny: 1000000 zeny is outside 1..500" in record.rejections[0]
    queued = await ActionQueue(redis_client, keys).pending(profile.npc_id)
    assert "give_zeny" not in {action.action.kind for action in queued}, "the gift never reaches the game"
    assert f"{profile.npc_id}-{record.sequence}-0" in {action.action_id for action in queued}  # the emote did
    texts = [
        await redis_client.hget(keys.memory(profile.npc_id, mid), "json")
        for mid in await memory_ids(redis_client, keys, profile.npc_id)
    ]
    assert any("I could not do this" in text for text in texts)


class MarkupModel(OfflineDecisionMaker):
    """A model whose answers carry client tags, and that echoes the NPC's name and the player's own line back."""

    async def converse(self, context):
        draft = DialogueDraft(
            text=f'I am {context.profile.name}. You said "{context.turn.text}". <URL>Claim your prize<INFO>http://phish.example</INFO></URL>',
            emotion="smile",
            options=["<NAVI>[Go]<INFO>prontera,150,150</INFO></NAVI>", "<ITEM>Jellopy<INFO>909</INFO></ITEM>", "Bye"],
        )
        return draft, DecisionUsage(provider="markup")


async def test_client_tags_in_replies_options_and_echoed_player_lines_never_reach_the_game(
    time_skipping_env, task_queue, redis_client, keys
):
    async with build_worker(time_skipping_env.client, task_queue, redis_client, keys, MarkupModel()):
        life = NpcLife(time_skipping_env.client, task_queue, keys)
        profile = demo_profile("lina_baker", name="<NAVI>Lina</NAVI>")  # registered by some API client
        handle = await life.start(profile)
        turn = TalkTurn(turn_id="ev-77", player=ARIA, text="<ITEMLINK>Elunium<INFO>985</INFO></ITEMLINK> for free?")
        reply = await handle.execute_update("talk", turn, result_type=TalkReply)
        await handle.terminate("test finished")
    shown = [reply.text, *reply.options]
    assert (
        "Claim your prize" in reply.text
        and "Elunium" in reply.text
        and "Lina" in reply.text
        and len(reply.options) == 3
    )
    assert not [text for text in shown if "<" in text or ">" in text], shown
    queued = [a for a in await ActionQueue(redis_client, keys).pending(profile.npc_id) if a.action.kind == "reply"]
    row = translate.dialogue_row_of(queued[0].action, profile.npc_id)
    assert "<" not in row["reply"] + row["options"] and ">" not in row["reply"] + row["options"]
