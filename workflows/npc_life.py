"""NpcLifeWorkflow: one NPC's whole life as a durable entity workflow (DESIGN.md §4).

The NPC sleeps until something happens. Game events arrive as signals and wait in the state; a
player's line arrives as the `talk` update. While players are near (or the NPC matters enough to
keep a slow ambient routine) a timer sets the decision cadence; with nobody near and no event, the
workflow waits with no timer at all and costs nothing. Several events that arrived meanwhile are
handled in one wake. Significant events go to the decision maker (LLM or offline policy); anything
else follows the NPC's routine in workflow code, without an activity for the decision.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.memory_activities import MemoryActivities, ReflectionRequest
    from activities.npc_activities import (
        ContextRequest,
        DecidedAndSaved,
        DecisionPlan,
        NpcActivities,
        OutcomeWrite,
        PreparedDecision,
        PreparedReply,
        RecordRequest,
        RepliedAndSaved,
        ReplyPlan,
        lived_of,
        outcome_of,
        talk_outcome_of,
    )
    from aiworld.memory import gossip
    from aiworld.memory.meetings import MeetingRequest
    from aiworld.memory.reflection import REFLECTION_IMPORTANCE_THRESHOLD
    from aiworld.models import (
        Decision,
        DecisionRecord,
        DecisionResult,
        DecisionUsage,
        DialogueContext,
        DialogueDraft,
        GameEvent,
        GameEventKind,
        Memory,
        NpcConfiguration,
        NpcContext,
        NpcProfile,
        NpcStateView,
        TalkReply,
        TalkTurn,
        describe_invalid,
    )
    from aiworld.npc import experience, offline_policy, search_attributes
    from workflows.npc_state import (
        PROCESSED_EVENT_MEMORY,
        REFLECTION_EVIDENCE_KEPT,
        NpcLifeInput,
        NpcLifeState,
        PlayerPresence,
        RecentDecisions,
    )

# Every activity is bounded in time: no fault outside this workflow's own code (a store or a
# provider down, a corrupt record) may fail the NPC or hold it past a bound. When one runs out,
# the NPC decides without it (routine, offline reply) or keeps the write for later (`unsaved`).
# Activities fail as ActivityError, but a local activity's own ApplicationError arrives
# unwrapped: the handlers catch FailureError, the base of both.
CONTEXT_TIMEOUT = timedelta(seconds=5)
CONTEXT_SCHEDULE_TIMEOUT = timedelta(seconds=12)
DECISION_TIMEOUT = timedelta(seconds=60)
DECISION_SCHEDULE_TIMEOUT = timedelta(minutes=5)
STORE_TIMEOUT = timedelta(seconds=10)
STORE_SCHEDULE_TIMEOUT = timedelta(seconds=30)
# A player is waiting: the whole turn stays within the API's wait (8 s) whenever it can.
TALK_CONTEXT_TIMEOUT = timedelta(seconds=2)
# The context activities answer without memories once the store has taken this long, so that
# they end well within their own timeouts (a timed-out local activity costs a retry and time).
CONTEXT_STORE_BUDGET = CONTEXT_TIMEOUT.total_seconds() - 1
TALK_CONTEXT_STORE_BUDGET = TALK_CONTEXT_TIMEOUT.total_seconds() - 0.5
KNOWN_DOWN_STORE_BUDGET = 0.05
TALK_CONTEXT_SCHEDULE_TIMEOUT = timedelta(seconds=3)
REPLY_TIMEOUT = timedelta(seconds=6)
TALK_STORE_SCHEDULE_TIMEOUT = timedelta(seconds=3)
# While the store refuses writes, the NPC tries again after 5 s, 10 s, 20 s … at most a minute.
STORE_RETRY_FIRST, STORE_RETRY_LONGEST = 5.0, 60.0

# Data that fails validation will fail again: those errors are never retried.
NEVER_RETRIED = ["ValidationError", "InvalidDecision", "ProviderAuthError", "ProviderBadRequest"]
CONTEXT_RETRY = RetryPolicy(maximum_attempts=3, non_retryable_error_types=NEVER_RETRIED)
TALK_CONTEXT_RETRY = RetryPolicy(maximum_attempts=2, non_retryable_error_types=NEVER_RETRIED)
DECISION_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=4,
    non_retryable_error_types=NEVER_RETRIED,
)
REPLY_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500), maximum_attempts=2, non_retryable_error_types=NEVER_RETRIED
)
STORE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    non_retryable_error_types=NEVER_RETRIED,
)
OFFLINE = "offline"
# Runs that began with this patch decide and write through local activities: one workflow task
# per event. Runs that began before it keep their activities until their next continue-as-new.
LOCAL_PIPELINE = "local-pipeline"
# Runs that see a decision asking for another cadence (the LLM budget governor's first rung)
# adopt it from then on; older histories never carry such a decision.
BUDGET_CADENCE = "budget-cadence"
# Routine steps yield to load: a routine wake that comes later than its timer said means the
# worker (or the server) runs behind, so the NPC waits longer between routine steps until its
# wakes come on time again. Players and events should not wait behind an NPC's fidgeting.
ROUTINE_YIELDS = "routine-yields-to-load"
LATE_WAKE = timedelta(milliseconds=500)
ON_TIME_WAKE = timedelta(milliseconds=200)
LOAD_STRETCH_LIMIT = 16.0
SAVE_TIMEOUT = timedelta(seconds=3)
SAVE_SCHEDULE_TIMEOUT = timedelta(seconds=7)
SAVE_BUDGET_SECONDS = SAVE_TIMEOUT.total_seconds() - 0.5
SAVE_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=500), maximum_attempts=2)
Context = TypeVar("Context", bound=NpcContext)

# Seconds between decisions while players are near: 5 s for the most important NPCs, 30 s for the least.
FASTEST_CADENCE, SLOWEST_CADENCE = 5.0, 30.0
# NPCs this important keep a slow routine even with nobody near; the others sleep.
AMBIENT_IMPORTANCE = 7
AMBIENT_CADENCE = timedelta(minutes=3)
# A player seen near longer ago than this without a `player_left` is assumed gone.
PRESENCE_TIMEOUT = timedelta(minutes=10)
WORLD_EVENT_SIGNIFICANCE = 4
# A routine step with nothing new since the last doubles the wait before the next, up to 16 times
# the cadence (at most QUIET_CADENCE_LIMIT): a player standing idle near an NPC for ten minutes
# costs a handful of decisions, not a hundred. Any event brings the cadence back at once.
QUIET_DOUBLINGS = 4
QUIET_CADENCE_LIMIT = timedelta(minutes=5)
SEARCH_ATTRIBUTE_INTERVAL = timedelta(minutes=1)
# Runs that began with this patch hold to the minute when they settle down to sleep too: an NPC
# that sleeps between events (most of a large world) published its mood and activity after every
# decision, one visibility write each. What is held back goes out at its next wake after the
# minute. Asked once, in the run's first workflow task: a patch first asked right after a local
# activity can land in another workflow task on replay than it did live when that task timed out
# while the activity ran (seen under load), and the run then no longer replays.
SETTLED_ATTRIBUTES_WAIT = "settled-attributes-wait"
# Runs that began with this patch spend less on each decision: one routine timer runs on across
# the events handled in between (see _wait_for_news_or_routine; older runs start a timer per wait
# and cancel it when an event comes first); mood and activity are published at most every
# CHEAPER_SEARCH_ATTRIBUTE_INTERVAL, not every minute; the NPC meets its neighbours in the
# decision's save, not in a local activity of its own; and the run takes every earlier patch
# without asking (see _has). Asked first, in the run's first workflow task.
CHEAPER_DECISIONS = "cheaper-decisions"
CHEAPER_SEARCH_ATTRIBUTE_INTERVAL = timedelta(minutes=5)
# Runs that began with this patch make a decision the decision maker makes locally and write it in
# one local activity (`decide_and_save`) instead of two (context and decision, then the writes): one
# activation and one history marker less per decision. Asked in the run's first workflow task,
# right after CHEAPER_DECISIONS, which it takes for granted.
DECIDE_AND_SAVE = "decide-and-save"
# The context's store budget, the decision and the writes' budget, with room to spare.
DECIDE_AND_SAVE_TIMEOUT = timedelta(seconds=8)
DECIDE_AND_SAVE_SCHEDULE_TIMEOUT = timedelta(seconds=15)
# One attempt: a retry would decide again, perhaps otherwise, after some of the first attempt's
# writes were made. When it fails the NPC decides by activity, and its writes go under the same
# ids (first written, first kept), so nothing is written twice.
DECIDE_AND_SAVE_RETRY = RetryPolicy(maximum_attempts=1)
# A player's line under DECIDE_AND_SAVE: the context's store budget and the writes', within the
# API's wait (8 s).
REPLY_AND_SAVE_TIMEOUT = timedelta(seconds=5)
REPLY_AND_SAVE_SCHEDULE_TIMEOUT = timedelta(seconds=6)
# Runs with this patch reflect when the importance they lived passes the threshold, meet their
# neighbours (greetings, news passed on) and let faction news colour their mood.
SOCIAL_MEMORY = "social-memory"
REFLECTION_TIMEOUT = timedelta(seconds=60)
REFLECTION_SCHEDULE_TIMEOUT = timedelta(minutes=3)
REFLECTION_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), maximum_attempts=3, non_retryable_error_types=NEVER_RETRIED
)
MEETING_TIMEOUT = timedelta(seconds=5)
MEETING_SCHEDULE_TIMEOUT = timedelta(seconds=12)
MEETING_RETRY = RetryPolicy(maximum_attempts=2, non_retryable_error_types=NEVER_RETRIED)
# Without news to tell, an NPC looks around for neighbours at most this often.
MEETING_CADENCE = timedelta(minutes=10)
# Loyal members of a faction take its news to heart: their mood follows it.
MOOD_LOYALTY = 60

_SIGNIFICANT = {
    GameEventKind.PLAYER_ATTACKED,
    GameEventKind.ITEM_RECEIVED,
    GameEventKind.NPC_SPOKE,
    GameEventKind.PLAYER_KILLED_MONSTER,
}


class NpcRetired(Exception):
    pass


class InvalidTalkTurn(ValueError):
    pass


@workflow.defn(name="NpcLifeWorkflow")
class NpcLifeWorkflow:
    @workflow.init
    def __init__(self, life: NpcLifeInput) -> None:
        self._state = life.state or NpcLifeState(profile=life.profile)
        # Kept apart from the state while the run lives, and put back into it to continue as new.
        self._recent = RecentDecisions(self._state.recent_decisions)
        self._state.recent_decisions = []
        self._history_length_limit = life.history_length_limit
        self._duplicates_dropped = 0
        # Set by `configure`: the cadence may have changed, so the wait must be computed again.
        self._reconsider = False
        self._settled_attributes_wait = False  # the run's answer to SETTLED_ATTRIBUTES_WAIT
        self._cheaper_decisions = False  # the run's answer to CHEAPER_DECISIONS
        self._decide_and_save = False  # the run's answer to DECIDE_AND_SAVE
        # The routine step's timer under CHEAPER_DECISIONS, and when it fires.
        self._routine_timer: asyncio.Future[None] | None = None
        self._routine_due: datetime | None = None

    # --- life -------------------------------------------------------------------------------

    @workflow.run
    async def run(self, life: NpcLifeInput) -> str:
        self._cheaper_decisions = workflow.patched(CHEAPER_DECISIONS)
        self._decide_and_save = self._cheaper_decisions and workflow.patched(DECIDE_AND_SAVE)
        self._settled_attributes_wait = self._has(SETTLED_ATTRIBUTES_WAIT)
        self._publish_search_attributes()
        self._describe_now()
        while True:
            self._forget_stale_presence()
            if self._cheaper_decisions and not self._state.unsaved:
                woke_by_timer = await self._wait_for_news_or_routine()
            else:
                woke_by_timer = await self._wait_for_news_or_timeout()
            self._reconsider = False
            if self._state.retired and not self._state.pending_events and not self._state.unsaved:
                await workflow.wait_condition(workflow.all_handlers_finished)
                self._describe_now()
                return f"{self._state.profile.name} retired after {self._state.events_processed} events"
            if self._should_continue_as_new():
                # Handlers may still be running (a talk waiting on its reply): let them finish so
                # nothing they write is lost, then carry the state, pending events included.
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    NpcLifeInput(
                        profile=self._state.profile,
                        state=self._state.model_copy(
                            update={"runs": self._state.runs + 1, "recent_decisions": self._recent.records()}
                        ),
                        history_length_limit=self._history_length_limit,
                    )
                )
            if self._state.unsaved:
                if not await self._save_unsaved():
                    continue
                woke_by_timer = False  # that wake was for the store, not the routine
            await self._live(woke_by_timer)

    def _has(self, patch: str) -> bool:
        """Whether this run takes an earlier change. A run that began with CHEAPER_DECISIONS takes
        them all without asking: each patch asked costs the run a marker and a visibility write
        (the TemporalChangeVersion search attribute), and older runs ask as they always did."""
        return self._cheaper_decisions or workflow.patched(patch)

    def _has_news(self) -> bool:
        """Something to act on. While the store refuses writes, events wait in the state: the NPC
        handles them once its earlier writes are saved, so nothing is lost or reordered."""
        return (
            (bool(self._state.pending_events) and not self._state.unsaved)
            or self._state.retired
            or self._reconsider
            or self._should_continue_as_new()
        )

    async def _wait_for_news_or_timeout(self) -> bool:
        """Wait for news with a fresh timer each time (runs before CHEAPER_DECISIONS, and while the
        store refuses writes). True when the timer woke the NPC."""
        self._stop_routine_timer()
        waiting_for_store = bool(self._state.unsaved)
        timeout = self._store_retry_delay() if waiting_for_store else self._cadence()
        if timeout is None:  # settling down to sleep: publish what the minute's limit held back
            self._publish_search_attributes(settling=True)
        waiting_since = workflow.now()
        try:
            await workflow.wait_condition(self._has_news, timeout=timeout)
            return False
        except TimeoutError:
            if not waiting_for_store and timeout is not None:
                self._pace_routine(late_by=workflow.now() - waiting_since - timeout)
            return True

    async def _wait_for_news_or_routine(self) -> bool:
        """Wait for news while one routine timer runs on across them: an event handled in between
        neither cancels it nor starts another (two history events and a timer task saved per
        event). A timer is started only when none runs or when the cadence now asks for an
        earlier step than the running one. True when the routine timer woke the NPC."""
        cadence = self._cadence()
        now = workflow.now()
        if cadence is None:  # settling down to sleep: no timer at all
            self._stop_routine_timer()
            self._publish_search_attributes(settling=True)
        elif self._routine_timer is None or self._routine_due is None or now + cadence < self._routine_due:
            self._stop_routine_timer()
            self._routine_due = now + cadence
            self._routine_timer = asyncio.ensure_future(workflow.sleep(cadence))
        await workflow.wait_condition(
            lambda: self._has_news() or (self._routine_timer is not None and self._routine_timer.done())
        )
        timer, due = self._routine_timer, self._routine_due
        if timer is None or due is None or not timer.done():
            return False
        self._routine_timer = self._routine_due = None
        self._pace_routine(late_by=workflow.now() - due)
        return True

    def _stop_routine_timer(self) -> None:
        if self._routine_timer is not None and not self._routine_timer.done():
            self._routine_timer.cancel()
        self._routine_timer = self._routine_due = None

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        if info.is_continue_as_new_suggested():
            return True
        return (
            self._history_length_limit is not None and info.get_current_history_length() >= self._history_length_limit
        )

    def _store_retry_delay(self) -> timedelta:
        failures = max(1, self._state.store_failures)
        return timedelta(seconds=min(STORE_RETRY_LONGEST, STORE_RETRY_FIRST * 2 ** (failures - 1)))

    def _pace_routine(self, late_by: timedelta) -> None:
        """A routine wake's lateness is the queue it waited in: back off while it is long."""
        if not self._has(ROUTINE_YIELDS):
            return
        stretch = self._state.load_stretch
        if late_by > LATE_WAKE:
            self._state.load_stretch = min(LOAD_STRETCH_LIMIT, stretch * 2)
        elif late_by < ON_TIME_WAKE:
            self._state.load_stretch = max(1.0, stretch / 2)

    def _cadence(self) -> timedelta | None:
        """None means sleep: no timer, only an event wakes the NPC."""
        importance = self._state.profile.importance
        # The LLM budget's stretch and the load's: either may ask the NPC to fidget less.
        stretch = self._state.cadence_stretch * self._state.load_stretch
        if self._state.players_near:
            seconds = SLOWEST_CADENCE - (SLOWEST_CADENCE - FASTEST_CADENCE) * (importance - 1) / 9
            stretched = seconds * 2 ** min(self._state.quiet_steps, QUIET_DOUBLINGS)
            return min(timedelta(seconds=round(stretched, 1)), QUIET_CADENCE_LIMIT) * stretch
        if importance >= AMBIENT_IMPORTANCE:
            return AMBIENT_CADENCE * stretch
        return None

    def _forget_stale_presence(self) -> None:
        now = workflow.now()
        for char_id, presence in list(self._state.players_near.items()):
            if now - presence.since > PRESENCE_TIMEOUT:
                del self._state.players_near[char_id]

    async def _live(self, woke_by_timer: bool) -> None:
        events = self._state.pending_events
        self._state.pending_events = []
        # Marked before any await, so a redelivery that arrives while they are handled is dropped.
        for event in events:
            self._mark_processed(event)
        significant = [event for event in events if self._is_significant(event)]
        for event in events:
            self._track_presence(event)
        if any(self._is_news(event) for event in events):
            self._state.quiet_steps = 0
        if significant:
            await self._decide_and_act(events, trigger="events")
        elif events:
            await self._remember_quietly(events)
        elif woke_by_timer:
            await self._follow_routine()

    @staticmethod
    def _is_news(event: GameEvent) -> bool:
        """Anything but word that the NPC's own action went as planned: that is no reason to
        decide more often again."""
        return event.kind is not GameEventKind.ACTION_RESULT or event.outcome != "done"

    def _is_significant(self, event: GameEvent) -> bool:
        if event.kind in _SIGNIFICANT:
            return True
        if event.kind is GameEventKind.PLAYER_NEARBY:
            return event.player is not None and event.player.char_id not in self._state.players_near
        if event.kind is GameEventKind.WORLD_EVENT:
            return event.importance >= WORLD_EVENT_SIGNIFICANCE
        if event.kind is GameEventKind.ACTION_RESULT:
            return event.outcome == "failed"
        return False

    def _track_presence(self, event: GameEvent) -> None:
        if event.player is None:
            return
        if event.kind is GameEventKind.PLAYER_LEFT:
            self._state.players_near.pop(event.player.char_id, None)
        elif event.kind in {GameEventKind.PLAYER_NEARBY, GameEventKind.PLAYER_ATTACKED, GameEventKind.ITEM_RECEIVED}:
            self._state.players_near[event.player.char_id] = PlayerPresence(player=event.player, since=workflow.now())

    def _mark_processed(self, event: GameEvent) -> None:
        self._state.events_processed += 1
        self._state.processed_event_ids.append(event.event_id)
        del self._state.processed_event_ids[:-PROCESSED_EVENT_MEMORY]

    # --- deciding ---------------------------------------------------------------------------

    def _next_sequence(self) -> int:
        self._state.decision_sequence += 1
        return self._state.decision_sequence

    def _context_request(
        self, sequence: int, events: list[GameEvent], about: str | None = None, turn: TalkTurn | None = None
    ) -> ContextRequest:
        return ContextRequest(
            budget_seconds=TALK_CONTEXT_STORE_BUDGET if turn else CONTEXT_STORE_BUDGET,
            profile=self._state.profile,
            now=workflow.now(),
            sequence=sequence,
            mood=self._state.mood,
            activity=self._state.activity,
            events=events,
            players_near=[presence.player for presence in self._state.players_near.values()],
            recent_actions=self._recent.actions(),
            about=about,
            turn=turn,
        )

    async def _decide_and_act(self, events: list[GameEvent], trigger: str) -> None:
        sequence = self._next_sequence()
        request = self._context_request(sequence, events)
        if not self._has(LOCAL_PIPELINE):
            await self._decide_and_act_with_activities(sequence, request, events, trigger)
            return
        if self._decide_and_save:
            await self._decide_and_save_at_once(sequence, request, events, trigger)
            return
        try:
            prepared = await workflow.execute_local_activity_method(
                NpcActivities.prepare_decision,
                request,
                start_to_close_timeout=CONTEXT_TIMEOUT,
                schedule_to_close_timeout=CONTEXT_SCHEDULE_TIMEOUT,
                retry_policy=CONTEXT_RETRY,
            )
        except FailureError as error:
            workflow.logger.warning("context failed, deciding without memories: %s", error)
            prepared = PreparedDecision(
                context=self._context_without_store(NpcContext, request, str(error)), degraded=str(error)
            )
        if prepared.degraded:
            self._state.fallbacks += 1
        result = prepared.result
        if result is None:  # an LLM decides, in an activity of its own with Temporal's retries
            assert prepared.context is not None
            result, trigger = await self._decision_or_routine(prepared.context, sequence, trigger)
        self._count_decision(result, trigger)
        await self._carry_out(sequence, trigger, events, result, memory_ids=prepared.memory_ids)

    async def _decide_and_save_at_once(
        self, sequence: int, request: ContextRequest, events: list[GameEvent], trigger: str
    ) -> None:
        """Under DECIDE_AND_SAVE: context, decision and writes in one local activity when the
        decision maker is local; an LLM's decision still goes to an activity of its own."""
        meeting = self._meeting_due(sequence, has_news=self._brings_news(events))
        plan = DecisionPlan(
            request=request,
            trigger=trigger,
            involved=sorted(self._involved(events)),
            players_near_json=self._players_near_json(),
            meeting=meeting,
            save_budget_seconds=SAVE_BUDGET_SECONDS,
        )
        try:
            done = await workflow.execute_local_activity_method(
                NpcActivities.decide_and_save,
                plan,
                start_to_close_timeout=DECIDE_AND_SAVE_TIMEOUT,
                schedule_to_close_timeout=DECIDE_AND_SAVE_SCHEDULE_TIMEOUT,
                retry_policy=DECIDE_AND_SAVE_RETRY,
            )
        except FailureError as error:
            workflow.logger.warning("deciding and saving at once failed, deciding by activity: %s", error)
            done = DecidedAndSaved(
                context=self._context_without_store(NpcContext, request, str(error)), degraded=str(error)
            )
        if done.degraded:
            self._state.fallbacks += 1
        decided = done.decided
        if decided is None:  # an LLM decides (or the local activity failed): as before this patch
            assert done.context is not None
            result, trigger = await self._decision_or_routine(done.context, sequence, trigger)
            self._count_decision(result, trigger)
            await self._carry_out(
                sequence, trigger, events, result, memory_ids=done.memory_ids, meeting_settled=True, meeting=meeting
            )
            return
        self._count_decision(DecisionResult(decision=decided.decision, usage=decided.usage), trigger)
        if done.rejected:
            self._state.rejected_decisions += 1
        if done.unsaved is not None:
            self._keep_unsaved(done.unsaved, done.store_error)
        await self._after_decision(decided, done.lived, events)

    def _adopt_cadence(self, result: DecisionResult, trigger: str) -> None:
        """The budget governor's cadence comes with each decision it made; a decision made without
        it (the decision maker failed) says nothing about the budget."""
        stretch = result.usage.cadence_stretch
        if trigger != "routine-after-failure" and stretch != self._state.cadence_stretch:
            if self._has(BUDGET_CADENCE):
                self._state.cadence_stretch = stretch

    async def _decision_or_routine(
        self, context: NpcContext, sequence: int, trigger: str
    ) -> tuple[DecisionResult, str]:
        """The decision maker's answer and the trigger, or the routine's when none could be had."""
        result = await self._decision_by_activity(context, sequence)
        if result is None:
            return DecisionResult(decision=self._routine_decision(sequence)), "routine-after-failure"
        return result, trigger

    async def _decision_by_activity(self, context: NpcContext, sequence: int) -> DecisionResult | None:
        """The decision maker's answer, or None when none could be had (providers down, retries spent)."""
        try:
            return await workflow.execute_activity_method(
                NpcActivities.decide_next_action,
                context,
                start_to_close_timeout=DECISION_TIMEOUT,
                schedule_to_close_timeout=DECISION_SCHEDULE_TIMEOUT,
                retry_policy=DECISION_RETRY,
            )
        except FailureError as error:
            # Live on by routine rather than stall or fail; the failure stays visible in the
            # history and in the decision record's trigger.
            workflow.logger.warning("decision failed, following routine instead: %s", error)
            self._state.fallbacks += 1
            return None

    def _count_decision(self, result: DecisionResult, trigger: str) -> None:
        self._adopt_cadence(result, trigger)
        if trigger == "routine-after-failure":
            self._state.routine_decisions += 1
        elif result.usage.provider == OFFLINE:
            self._state.policy_decisions += 1
        else:
            self._state.llm_decisions += 1

    async def _decide_and_act_with_activities(
        self, sequence: int, request: ContextRequest, events: list[GameEvent], trigger: str
    ) -> None:
        """Before LOCAL_PIPELINE: a context local activity, then the decision as an activity."""
        try:
            context = await workflow.execute_local_activity_method(
                NpcActivities.load_npc_context,
                request,
                start_to_close_timeout=CONTEXT_TIMEOUT,
                schedule_to_close_timeout=CONTEXT_SCHEDULE_TIMEOUT,
                retry_policy=CONTEXT_RETRY,
            )
        except FailureError as error:
            # The store is down or holds a corrupt record: decide from what the NPC carries.
            workflow.logger.warning("context failed, deciding without memories: %s", error)
            context = self._context_without_store(NpcContext, request, str(error))
        if context.degraded:
            self._state.fallbacks += 1
        result, trigger = await self._decision_or_routine(context, sequence, trigger)
        self._count_decision(result, trigger)
        await self._carry_out(
            sequence, trigger, events, result, memory_ids=[memory.memory_id for memory in context.memories]
        )

    async def _follow_routine(self) -> None:
        self._state.quiet_steps += 1
        sequence = self._next_sequence()
        self._state.routine_decisions += 1
        await self._carry_out(sequence, "routine", [], DecisionResult(decision=self._routine_decision(sequence)))

    def _routine_decision(self, sequence: int) -> Decision:
        context = NpcContext(
            profile=self._state.profile,
            now=workflow.now(),
            mood=self._state.mood,
            activity=self._state.activity,
            players_near=[presence.player for presence in self._state.players_near.values()],
            sequence=sequence,
        )
        return offline_policy.routine(context, workflow.random())

    async def _carry_out(
        self,
        sequence: int,
        trigger: str,
        events: list[GameEvent],
        result: DecisionResult,
        memory_ids: list[str] | None = None,
        *,
        meeting_settled: bool = False,
        meeting: MeetingRequest | None = None,
    ) -> None:
        """Write a decision made in workflow code or by an activity. With `meeting_settled`, the
        meeting (if any was due) was settled before the decision (DECIDE_AND_SAVE)."""
        plan = DecisionPlan(
            request=self._context_request(sequence, events),
            trigger=trigger,
            involved=sorted(self._involved(events)),
            players_near_json=self._players_near_json(),
        )
        outcome = outcome_of(plan, result, memory_ids or [], workflow.now(), SAVE_BUDGET_SECONDS)
        write = outcome.write
        assert write.record is not None and write.decision is not None
        if outcome.rejected:
            self._state.rejected_decisions += 1
        if not meeting_settled and self._cheaper_decisions:
            meeting = self._meeting_due(sequence, has_news=self._brings_news(events))
        write.meeting = meeting
        await self._save(write, STORE_SCHEDULE_TIMEOUT)
        await self._after_decision(write.decision, lived_of(write.record.memories), events)

    async def _after_decision(self, decided: DecisionRecord, lived: dict[str, int], events: list[GameEvent]) -> None:
        decision = decided.decision
        self._state.mood = decision.mood
        self._state.activity = decision.activity
        self._state.activity_reason = decision.reason or decided.trigger
        await self._live_socially(decided.sequence, lived, events)
        self._record(decided)

    def _involved(self, events: list[GameEvent]) -> set[int]:
        """Gifts, zeny and quests only to the players a decision is about or who stand near."""
        return {event.player.char_id for event in events if event.player} | set(self._state.players_near)

    @staticmethod
    def _brings_news(events: list[GameEvent]) -> bool:
        return any(gossip.news_memory_facts(event)[0] for event in events)

    async def _remember_quietly(self, events: list[GameEvent]) -> None:
        """Events worth remembering but not worth a decision (a player leaving, an action done)."""
        sequence = self._next_sequence()
        record = RecordRequest(
            profile=self._state.profile,
            memories=[self._memory_of(event, sequence, index) for index, event in enumerate(events)],
        )
        await self._save(OutcomeWrite(record=record, budget_seconds=SAVE_BUDGET_SECONDS), STORE_SCHEDULE_TIMEOUT)
        self._note_lived(lived_of(record.memories))

    # --- inner and social life --------------------------------------------------------------

    def _note_lived(self, lived: dict[str, int]) -> None:
        """What the NPC lived (memory ids and their importance) counts toward its next reflection."""
        self._state.importance_since_reflection += sum(lived.values())
        evidence = self._state.reflection_evidence + list(lived)
        self._state.reflection_evidence = evidence[-REFLECTION_EVIDENCE_KEPT:]

    async def _live_socially(self, sequence: int, lived: dict[str, int], events: list[GameEvent]) -> None:
        """After a decision: reflect once the importance lived passes the threshold; meet the
        neighbours when there is news to tell, or now and then (under CHEAPER_DECISIONS that went
        with the save already); faction news sets the mood."""
        self._note_lived(lived)
        if not self._has(SOCIAL_MEMORY):
            return
        self._feel_for_faction(events)
        if self._state.importance_since_reflection >= REFLECTION_IMPORTANCE_THRESHOLD:
            await self._reflect(sequence)
        if (
            not self._cheaper_decisions
            and (meeting := self._meeting_due(sequence, has_news=self._brings_news(events))) is not None
        ):
            await self._meet_neighbours(meeting)

    def _meeting_due(self, sequence: int, *, has_news: bool) -> MeetingRequest | None:
        """A meeting when there is news to tell, or now and then; under CHEAPER_DECISIONS it runs
        in the decision's save, before that in a local activity of its own."""
        if not self._has(SOCIAL_MEMORY):
            return None
        now = workflow.now()
        last = self._state.last_meeting_at
        if not has_news and last is not None and now - last < MEETING_CADENCE:
            return None
        self._state.last_meeting_at = now
        return MeetingRequest(profile=self._state.profile, sequence=sequence, now=now)

    async def _reflect(self, sequence: int) -> None:
        """Fires once per threshold: the count starts again whether or not the insights came."""
        request = ReflectionRequest(
            profile=self._state.profile,
            reflection_id=f"{sequence}-reflection",
            evidence_ids=self._state.reflection_evidence,
            now=workflow.now(),
        )
        self._state.importance_since_reflection = 0
        self._state.reflection_evidence = []
        try:
            await workflow.execute_activity_method(
                MemoryActivities.reflect,
                request,
                start_to_close_timeout=REFLECTION_TIMEOUT,
                schedule_to_close_timeout=REFLECTION_SCHEDULE_TIMEOUT,
                retry_policy=REFLECTION_RETRY,
            )
        except FailureError as error:
            workflow.logger.warning("reflection failed; the NPC reflects next time: %s", error)
            return
        self._state.reflections += 1

    async def _meet_neighbours(self, meeting: MeetingRequest) -> None:
        """Before CHEAPER_DECISIONS: the meeting in a local activity of its own."""
        try:
            await workflow.execute_local_activity_method(
                MemoryActivities.meet_neighbours,
                meeting,
                start_to_close_timeout=MEETING_TIMEOUT,
                schedule_to_close_timeout=MEETING_SCHEDULE_TIMEOUT,
                retry_policy=MEETING_RETRY,
            )
        except FailureError as error:  # a missed chat is no reason to stop living
            workflow.logger.warning("meeting the neighbours failed: %s", error)

    def _feel_for_faction(self, events: list[GameEvent]) -> None:
        """A loyal member is worried by ill news of its faction and proud of good news."""
        profile = self._state.profile
        if profile.faction_loyalty < MOOD_LOYALTY:
            return
        for event in events:
            if event.kind is GameEventKind.WORLD_EVENT and experience.concerns_faction(event, profile):
                feeling = gossip.tone(event.text or "")
                if feeling:
                    self._state.mood = "proud" if feeling > 0 else "worried"

    # --- writing to the state store ---------------------------------------------------------

    async def _save(self, write: OutcomeWrite, bound: timedelta) -> dict[str, int]:
        """Write a decision's memories and actions; the parties' relationship scores come back.

        While the store refuses writes they wait in the state, in order, and are written when it
        answers again (`_save_unsaved`): a store outage delays what the NPC writes, never loses it
        and never fails the NPC. Both writes are idempotent, so writing one again is harmless.
        """
        if self._state.unsaved:  # the store is known to be down: keep the order, don't wait on it
            self._state.unsaved.append(write)
            return {}
        try:
            return await self._write(write, bound)
        except FailureError as error:
            self._keep_unsaved(write, str(error))
            return {}

    def _keep_unsaved(self, write: OutcomeWrite, why: str | None) -> None:
        """A write the store refused, kept in order to be written when it answers again."""
        workflow.logger.warning("the state store refused a write; keeping it for later: %s", why)
        if not self._state.unsaved:  # else an earlier failure counts already
            self._state.store_failures = 1
        self._state.unsaved.append(write)

    async def _write(self, write: OutcomeWrite, bound: timedelta) -> dict[str, int]:
        if self._has(LOCAL_PIPELINE):
            return await workflow.execute_local_activity_method(
                NpcActivities.save_outcome,
                write,
                start_to_close_timeout=SAVE_TIMEOUT,
                schedule_to_close_timeout=SAVE_SCHEDULE_TIMEOUT,
                retry_policy=SAVE_RETRY,
            )
        # Before LOCAL_PIPELINE: two activities.
        record, actions = write.record, write.actions
        scores: dict[str, int] = {}
        if record is not None:
            scores = await workflow.execute_activity_method(
                NpcActivities.record_outcome,
                record,
                start_to_close_timeout=STORE_TIMEOUT,
                schedule_to_close_timeout=bound,
                retry_policy=STORE_RETRY,
            )
        if actions:
            await workflow.execute_activity_method(
                NpcActivities.enqueue_actions,
                actions,
                start_to_close_timeout=STORE_TIMEOUT,
                schedule_to_close_timeout=bound,
                retry_policy=STORE_RETRY,
            )
        return scores

    async def _save_unsaved(self) -> bool:
        """Write what the store refused earlier, oldest first. True once nothing is left."""
        while self._state.unsaved:
            write = self._state.unsaved[0]
            try:
                await self._write(write, STORE_SCHEDULE_TIMEOUT)
            except FailureError as error:
                self._state.store_failures += 1
                workflow.logger.warning("the state store still refuses writes: %s", error)
                self._describe_now()
                return False
            # A talk turn may have appended meanwhile; the written one is still the first.
            self._state.unsaved.pop(0)
        self._state.store_failures = 0
        self._describe_now()
        return True

    def _memory_of(self, event: GameEvent, sequence: int, index: int) -> Memory:
        return experience.memory_of_event(event, self._state.profile, f"{sequence}-event-{index}", workflow.now())

    def _players_near_json(self) -> str:
        """Who stands near, for the `npc:{id}` hash the world viewer reads."""
        return json.dumps(
            [
                {"char_id": p.player.char_id, "name": p.player.name, "x": p.player.x, "y": p.player.y}
                for p in self._state.players_near.values()
            ]
        )

    def _record(self, record: DecisionRecord) -> None:
        self._recent.add(record)
        self._publish_search_attributes()
        self._describe_now()

    # --- what operators see -----------------------------------------------------------------

    def _publish_search_attributes(self, *, settling: bool = False) -> None:
        """Upsert what operators search on, only on change. Each upsert is a visibility write on
        the server, so mood and activity, which change with most decisions, are published at most
        once a minute, or every five under CHEAPER_DECISIONS (before SETTLED_ATTRIBUTES_WAIT: also
        whenever the NPC settled down to sleep)."""
        wanted = {
            search_attributes.NPC_MAP.name: self._state.profile.map,
            search_attributes.NPC_FACTION.name: self._state.profile.faction,
            search_attributes.NPC_MOOD.name: self._state.mood,
            search_attributes.NPC_ACTIVITY.name: self._state.activity,
        }
        if wanted == self._state.published_attributes:
            return
        now = workflow.now()
        if self._has(LOCAL_PIPELINE) and (not settling or self._settled_attributes_wait):
            where = (search_attributes.NPC_MAP.name, search_attributes.NPC_FACTION.name)
            moved = any(self._state.published_attributes.get(name) != wanted[name] for name in where)
            interval = CHEAPER_SEARCH_ATTRIBUTE_INTERVAL if self._cheaper_decisions else SEARCH_ATTRIBUTE_INTERVAL
            recently = self._state.published_at is not None and now - self._state.published_at < interval
            if recently and not moved:
                return
        self._state.published_at = now
        keys = {key.name: key for key in search_attributes.ALL}
        workflow.upsert_search_attributes(
            [
                keys[name].value_set(value)
                for name, value in wanted.items()
                if self._state.published_attributes.get(name) != value
            ]
        )
        self._state.published_attributes = wanted

    def _describe_now(self) -> None:
        state = self._state
        lines = [
            f"**{state.profile.name}** is *{state.activity}* ({state.mood}) — {state.activity_reason}",
            f"Players near: {', '.join(p.player.name for p in state.players_near.values()) or 'nobody'}",
        ]
        last = self._recent.last
        if last is not None:
            actions = ", ".join(action.kind for action in last.decision.actions) or "nothing"
            budget = "" if last.usage.budget_rung == "normal" else f", budget rung {last.usage.budget_rung}"
            lines.append(
                f"Last decision #{last.sequence} ({last.trigger}, by {last.usage.provider}{budget}): {actions}; "
                f"inputs: {', '.join(last.event_ids) or 'none'}"
                + (f"; rejected: {'; '.join(last.rejections)}" if last.rejections else "")
            )
        if state.unsaved:
            lines.append(
                f"Waiting for the state store: {len(state.unsaved)} write(s) kept, "
                f"{state.store_failures} failed attempt(s); events wait until they are saved."
            )
        if state.retired:
            lines.append("Retired.")
        workflow.set_current_details("\n\n".join(lines))

    # --- messages ---------------------------------------------------------------------------

    @workflow.signal
    def game_event(self, event: GameEvent) -> None:
        seen = event.event_id in self._state.processed_event_ids or any(
            pending.event_id == event.event_id for pending in self._state.pending_events
        )
        if seen:
            # A retried POST or a replayed bridge row: the NPC already has it.
            self._duplicates_dropped += 1
            return
        self._state.pending_events.append(event)

    @workflow.signal
    def configure(self, change: NpcConfiguration) -> None:
        self._state.profile = NpcProfile.model_validate(
            self._state.profile.model_dump() | change.model_dump(exclude_none=True)
        )
        self._reconsider = True
        self._describe_now()

    @workflow.signal
    def retire(self) -> None:
        self._state.retired = True

    @workflow.update
    async def talk(self, raw_turn: dict[str, Any]) -> TalkReply:
        # Taken as a plain mapping so that the validator, not the payload decoder, judges it and
        # can say precisely what is wrong (a decoder failure only says "failed decoding arguments").
        turn = TalkTurn.model_validate(raw_turn)
        self._state.players_near[turn.player.char_id] = PlayerPresence(player=turn.player, since=workflow.now())
        sequence = self._next_sequence()
        party = f"player:{turn.player.char_id}"
        plan = ReplyPlan(
            request=self._context_request(sequence, [], about=party, turn=turn),
            turn_id=turn.turn_id or f"seq{sequence}",
            players_near_json=self._players_near_json(),
            save_budget_seconds=SAVE_BUDGET_SECONDS,
        )
        if self._decide_and_save:
            done = await self._reply_and_save_at_once(plan)
            if done.reply is not None and done.decided is not None:
                if done.unsaved is not None:
                    self._keep_unsaved(done.unsaved, done.store_error)
                return self._replied(turn, done.reply, done.decided, done.lived)
            assert done.context is not None  # an LLM replies (or the local activity failed)
            draft, usage = await self._composed_reply(done.context)
            memory_ids = done.memory_ids
        else:
            draft, usage, memory_ids = await self._reply_to(plan.request)
        outcome = talk_outcome_of(plan, draft, usage, memory_ids, workflow.now())
        write = outcome.write
        assert write.record is not None and write.decision is not None
        scores = await self._save(write, TALK_STORE_SCHEDULE_TIMEOUT)
        reply = outcome.reply.model_copy(update={"relationship": scores.get(party, 0)})
        return self._replied(turn, reply, write.decision, lived_of(write.record.memories))

    def _replied(self, turn: TalkTurn, reply: TalkReply, decided: DecisionRecord, lived: dict[str, int]) -> TalkReply:
        self._note_lived(lived)
        self._state.activity, self._state.activity_reason = "talking", f"talking with {turn.player.name}"
        self._record(decided)
        return reply

    async def _reply_and_save_at_once(self, plan: ReplyPlan) -> RepliedAndSaved:
        """Under DECIDE_AND_SAVE: the context, the reply and its writes in one local activity when
        the decision maker replies locally. A store known to be down gets no time at all: the
        player is not kept waiting on it, and the writes come back to be kept."""
        if self._state.unsaved:
            request = plan.request.model_copy(update={"budget_seconds": KNOWN_DOWN_STORE_BUDGET})
            plan = plan.model_copy(update={"request": request, "write": False})
        try:
            done = await workflow.execute_local_activity_method(
                NpcActivities.reply_and_save,
                plan,
                start_to_close_timeout=REPLY_AND_SAVE_TIMEOUT,
                schedule_to_close_timeout=REPLY_AND_SAVE_SCHEDULE_TIMEOUT,
                retry_policy=DECIDE_AND_SAVE_RETRY,
            )
        except FailureError as error:
            workflow.logger.warning("replying and saving at once failed, replying by activity: %s", error)
            context = self._context_without_store(DialogueContext, plan.request, str(error))
            done = RepliedAndSaved(context=context, degraded=str(error))
        if done.degraded:
            self._state.fallbacks += 1
        return done

    async def _reply_to(self, request: ContextRequest) -> tuple[DialogueDraft, DecisionUsage | None, list[str]]:
        """Before DECIDE_AND_SAVE: the NPC's answer to a player's line (None as usage when the
        offline policy stood in), and the memories it was made from."""
        if self._has(LOCAL_PIPELINE):
            prepared = await self._prepare_reply(request)
            if prepared.reply is not None:
                return prepared.reply.draft, prepared.reply.usage, prepared.memory_ids
            assert prepared.context is not None
            context = prepared.context
        else:
            context = await self._dialogue_context(request)
        draft, usage = await self._composed_reply(context)
        return draft, usage, [memory.memory_id for memory in context.memories]

    async def _composed_reply(self, context: DialogueContext) -> tuple[DialogueDraft, DecisionUsage | None]:
        """The decision maker's reply in an activity of its own, or the offline policy's when it
        failed (None as usage)."""
        try:
            result = await workflow.execute_activity_method(
                NpcActivities.compose_reply,
                context,
                start_to_close_timeout=REPLY_TIMEOUT,
                schedule_to_close_timeout=REPLY_TIMEOUT,
                retry_policy=REPLY_RETRY,
            )
        except FailureError as error:
            workflow.logger.warning("reply failed, answering from the offline policy: %s", error)
            self._state.fallbacks += 1
            return offline_policy.reply(context), None
        return result.draft, result.usage

    async def _prepare_reply(self, request: ContextRequest) -> PreparedReply:
        """The context of a player's line, and the reply itself when the decision maker is local.
        A store known to be down gets no time at all: the player is not kept waiting on it."""
        if self._state.unsaved:
            request = request.model_copy(update={"budget_seconds": KNOWN_DOWN_STORE_BUDGET})
        try:
            prepared = await workflow.execute_local_activity_method(
                NpcActivities.prepare_reply,
                request,
                start_to_close_timeout=TALK_CONTEXT_TIMEOUT,
                schedule_to_close_timeout=TALK_CONTEXT_SCHEDULE_TIMEOUT,
                retry_policy=TALK_CONTEXT_RETRY,
            )
        except FailureError as error:
            workflow.logger.warning("dialogue context failed, answering without memories: %s", error)
            context = self._context_without_store(DialogueContext, request, str(error))
            prepared = PreparedReply(context=context, degraded=str(error))
        if prepared.degraded:
            self._state.fallbacks += 1
        return prepared

    async def _dialogue_context(self, request: ContextRequest) -> DialogueContext:
        """Before LOCAL_PIPELINE: what the NPC knows of the player; without the store, it answers
        from what it carries."""
        if not self._state.unsaved:  # a store known to be down is not waited on while a player waits
            try:
                context = await workflow.execute_local_activity_method(
                    NpcActivities.load_dialogue_context,
                    request,
                    start_to_close_timeout=TALK_CONTEXT_TIMEOUT,
                    schedule_to_close_timeout=TALK_CONTEXT_SCHEDULE_TIMEOUT,
                    retry_policy=TALK_CONTEXT_RETRY,
                )
            except FailureError as error:
                workflow.logger.warning("dialogue context failed, answering without memories: %s", error)
                context = self._context_without_store(DialogueContext, request, str(error))
        else:
            context = self._context_without_store(DialogueContext, request, "the state store is known to be down")
        if context.degraded:
            self._state.fallbacks += 1
        return context

    @staticmethod
    def _context_without_store(kind: type[Context], request: ContextRequest, why: str) -> Context:
        """What the NPC carries in its own state: enough to decide or reply, without memories."""
        exclude = {"about", "budget_seconds"} | ({"turn"} if kind is NpcContext else set())
        return kind.model_validate(request.model_dump(exclude=exclude) | {"degraded": why})

    @talk.validator
    def _validate_talk(self, raw_turn: dict[str, Any]) -> None:
        # Runs before anything is written to history: a rejected turn leaves no trace.
        if self._state.retired:
            raise NpcRetired(f"{self._state.profile.name} has retired and no longer talks")
        try:
            TalkTurn.model_validate(raw_turn)
        except ValidationError as error:
            raise InvalidTalkTurn(describe_invalid(error)) from None

    @workflow.query
    def state(self) -> NpcStateView:
        state = self._state
        return NpcStateView(
            npc_id=state.profile.npc_id,
            name=state.profile.name,
            map=state.profile.map,
            x=state.profile.x,
            y=state.profile.y,
            faction=state.profile.faction,
            importance=state.profile.importance,
            mood=state.mood,
            activity=state.activity,
            activity_reason=state.activity_reason,
            players_near=[presence.player for presence in state.players_near.values()],
            decision_sequence=state.decision_sequence,
            events_processed=state.events_processed,
            pending_events=len(state.pending_events),
            rejected_decisions=state.rejected_decisions,
            llm_decisions=state.llm_decisions,
            policy_decisions=state.policy_decisions,
            routine_decisions=state.routine_decisions,
            load_stretch=state.load_stretch,
            fallbacks=state.fallbacks,
            unsaved_writes=len(state.unsaved),
            retired=state.retired,
            sleeping=not state.pending_events and self._cadence() is None,
            runs=state.runs,
            reflections=state.reflections,
            importance_since_reflection=state.importance_since_reflection,
        )

    @workflow.query
    def recent_decisions(self) -> list[DecisionRecord]:
        return self._recent.records()

    @workflow.query
    def profile(self) -> NpcProfile:
        """Who the NPC is now (registration and `configure` included): where it lives, its shop."""
        return self._state.profile
