"""Activities of an NPC's life: load what it knows, decide, remember, and queue actions.

Each is safe to run twice (a retry or a `temporal workflow reset` runs it again): memories and
relationship changes are keyed by the decision sequence, actions by their deterministic ids.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Protocol

from pydantic import BaseModel, Field
from redis.exceptions import RedisError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from aiworld.memory.consolidation import maybe_consolidate
from aiworld.memory.gossip import Gossip
from aiworld.memory.meetings import MeetingRequest, Meetings
from aiworld.memory.reflection import Insight
from aiworld.memory.relationships import RelationshipMove
from aiworld.memory.store import MemoryStore
from aiworld.models import (
    MAX_REPLY_CHARS,
    Decision,
    DecisionRecord,
    DecisionResult,
    DecisionUsage,
    DialogueContext,
    DialogueDraft,
    DialogueReplyAction,
    GameEvent,
    Memory,
    NpcContext,
    NpcProfile,
    PlayerRef,
    QueuedAction,
    TalkReply,
    TalkTurn,
    clean_game_text,
)
from aiworld.npc import experience
from aiworld.npc.experience import RelationshipChange
from aiworld.npc.priority import PriorityGate, Turn
from aiworld.npc.rules import validate_decision
from aiworld.ops.metrics import WorkerMetrics
from aiworld.store.action_queue import ActionQueue
from aiworld.world.feed import WorldFeed, action_entry, decision_entry, decision_entry_id


class DecisionMaker(Protocol):
    """The LLM router (aiworld.llm) or anything with the same calls."""

    async def decide(self, context: NpcContext) -> DecisionResult: ...

    async def converse(self, context: DialogueContext) -> tuple[DialogueDraft, DecisionUsage]: ...

    async def reflect(self, profile: NpcProfile, evidence: list[Memory]) -> tuple[list[Insight], DecisionUsage]: ...

    def decides_locally(self, tier: str) -> bool:
        """True when the tier's decisions need no network (the offline policy): then they are made
        inside the local activity that loads the context, with no activity of their own."""
        ...


class ContextRequest(BaseModel):
    profile: NpcProfile
    now: datetime
    sequence: int
    mood: str
    activity: str
    events: list[GameEvent] = Field(default_factory=list)
    players_near: list[PlayerRef] = Field(default_factory=list)
    recent_actions: list[str] = Field(default_factory=list)
    # The party the NPC is dealing with ("player:150001"): its memories rank first.
    about: str | None = None
    turn: TalkTurn | None = None
    # How long the store may take; past it (or when it fails) the context comes without memories.
    budget_seconds: float = Field(default=4.0, gt=0, le=60)


class ReplyResult(BaseModel):
    draft: DialogueDraft
    usage: DecisionUsage


class RecordRequest(BaseModel):
    profile: NpcProfile
    memories: list[Memory] = Field(default_factory=list)
    relationship_changes: list[RelationshipChange] = Field(default_factory=list)
    npc_fields: dict[str, str] = Field(default_factory=dict)


class OutcomeWrite(BaseModel):
    """Everything one decision or talk turn writes to the state store, written at once."""

    record: RecordRequest | None = None
    actions: list[QueuedAction] = Field(default_factory=list)
    # The decision these writes come from (None: only memories), for the world feed and metrics.
    decision: DecisionRecord | None = None
    # Past this the write gives up with a clean failure, inside its activity's own timeout.
    budget_seconds: float = Field(default=2.5, gt=0, le=60)
    # The NPC meets its neighbours once the writes are done, within what is left of the budget.
    meeting: MeetingRequest | None = None


class PreparedDecision(BaseModel):
    """What the local activity before a decision found: the decision itself when it could be made
    there, or the context for the decision activity (an LLM); `degraded` says what was missing."""

    result: DecisionResult | None = None
    context: NpcContext | None = None
    degraded: str | None = None
    # The memories the context held, best first: the decision record shows them.
    memory_ids: list[str] = Field(default_factory=list)


class DecisionPlan(BaseModel):
    """What the workflow settled before a decision: the context to load and what the writes need.
    A decision the decision maker makes locally is made and written from it in one local activity
    (`decide_and_save`)."""

    request: ContextRequest
    trigger: str
    # Char ids of the players the events are about or who stand near: the only ones a gift, zeny
    # or a quest may go to.
    involved: list[int] = Field(default_factory=list)
    players_near_json: str = "[]"
    meeting: MeetingRequest | None = None
    # How long the writes may take, counted from the decision: past it they come back unsaved.
    save_budget_seconds: float = Field(default=2.5, gt=0, le=60)


class DecidedAndSaved(BaseModel):
    """What `decide_and_save` did. With an LLM deciding, only the context for its activity (nothing
    decided or written yet); else the decision as recorded and, when the store refused it, the
    write for the workflow to keep and save later."""

    context: NpcContext | None = None
    decided: DecisionRecord | None = None
    # The memories the decision wrote, each with its importance (what counts toward reflection).
    lived: dict[str, int] = Field(default_factory=dict)
    rejected: bool = False
    unsaved: OutcomeWrite | None = None
    store_error: str | None = None
    degraded: str | None = None
    memory_ids: list[str] = Field(default_factory=list)


class DecisionOutcome(BaseModel):
    """Everything a decision writes, and whether the rules turned any of its actions down."""

    write: OutcomeWrite
    rejected: bool = False


def lived_of(memories: list[Memory]) -> dict[str, int]:
    """Memory ids and their importance, in order: what counts toward the NPC's next reflection."""
    return {memory.memory_id: memory.importance for memory in memories}


def outcome_of(
    plan: DecisionPlan, result: DecisionResult, memory_ids: list[str], now: datetime, budget_seconds: float
) -> DecisionOutcome:
    """The actions the rules let through, the memories, relationship changes and public fields a
    decision writes, and its record: a pure function of the plan and the decision, so the
    workflow (after a decision activity) and `decide_and_save` build the same writes, and a write
    made again under the same ids is the same write."""
    request = plan.request
    profile, sequence, events, decision = request.profile, request.sequence, request.events, result.decision
    verdict = validate_decision(decision, profile, involved=set(plan.involved))
    queued = [
        QueuedAction(
            action_id=f"{profile.npc_id}-{sequence}-{index}",
            npc_id=profile.npc_id,
            sequence=sequence,
            action=action,
            map=profile.map,
            npc_name=profile.name,
            reason=decision.reason,
            created_at=now,
        )
        for index, action in enumerate(verdict.accepted)
    ]
    memories = [
        experience.memory_of_event(event, profile, f"{sequence}-event-{index}", now)
        for index, event in enumerate(events)
    ]
    if queued:
        what = ", ".join(action.kind for action in verdict.accepted)
        memories.append(
            # The reason is the model's, and may echo what a player said: quoted, like their words.
            Memory(
                memory_id=f"{sequence}-decided",
                kind="action",
                text=f"I chose to {what} because:",
                words=decision.reason or None,
                importance=3,
                emotion=decision.mood,
                created_at=now,
            )
        )
    if verdict.rejections:
        memories.append(
            Memory(
                memory_id=f"{sequence}-rejected",
                kind="rejected",
                importance=5,
                emotion="fret",
                created_at=now,
                text="I could not do this: " + "; ".join(verdict.rejections),
            )
        )
    record = RecordRequest(
        profile=profile,
        memories=memories,
        relationship_changes=[
            change for event in events if (change := experience.relationship_change_of(event, profile))
        ],
        npc_fields={
            "action": decision.activity,
            "mood": decision.mood,
            "reason": decision.reason,
            "last_decision_ts": now.isoformat(),
            "decision_sequence": str(sequence),
            "players_near": plan.players_near_json,
        },
    )
    decided = DecisionRecord(
        sequence=sequence,
        decided_at=now,
        trigger=plan.trigger,
        event_ids=[event.event_id for event in events],
        decision=decision,
        usage=result.usage,
        queued_action_ids=[action.action_id for action in queued],
        rejections=verdict.rejections + verdict.clamped,
        memory_ids=memory_ids,
    )
    write = OutcomeWrite(
        record=record, actions=queued, decision=decided, budget_seconds=budget_seconds, meeting=plan.meeting
    )
    return DecisionOutcome(write=write, rejected=bool(verdict.rejections))


class ReplyPlan(BaseModel):
    """A player's line as the workflow settled it: the context to load (with the turn), and
    whether the writes may be tried (not while the store is known to be down)."""

    request: ContextRequest
    turn_id: str
    players_near_json: str = "[]"
    write: bool = True
    save_budget_seconds: float = Field(default=2.5, gt=0, le=60)


class TalkOutcome(BaseModel):
    """A talk turn's writes and the answer the player gets (their relationship score aside: the
    save says it)."""

    write: OutcomeWrite
    reply: TalkReply


class RepliedAndSaved(BaseModel):
    """What `reply_and_save` did: with an LLM replying, only the context for its activity; else
    the answer, the turn as recorded and, when the store refused the writes (or was known to be
    down), the write for the workflow to keep and save later."""

    context: DialogueContext | None = None
    reply: TalkReply | None = None
    decided: DecisionRecord | None = None
    lived: dict[str, int] = Field(default_factory=dict)
    unsaved: OutcomeWrite | None = None
    store_error: str | None = None
    degraded: str | None = None
    memory_ids: list[str] = Field(default_factory=list)


def talk_outcome_of(
    plan: ReplyPlan,
    draft: DialogueDraft,
    usage: DecisionUsage | None,
    memory_ids: list[str],
    now: datetime,
) -> TalkOutcome:
    """What a talk turn writes (what was said both ways, the relationship change, the reply queued
    as an action) and the answer: a pure function of the plan and the draft, so the workflow and
    `reply_and_save` clamp and write it the same way. The reply is queued even when the API has
    answered the player already: a caller that gave up waiting (504) was promised it arrives as an
    action. `usage` None: the offline policy stood in for a decision maker that failed."""
    request = plan.request
    turn = request.turn
    assert turn is not None
    profile, sequence, turn_id = request.profile, request.sequence, plan.turn_id
    party = f"player:{turn.player.char_id}"
    text = clean_game_text(draft.text)[:MAX_REPLY_CHARS] or "..."
    options = [clean_game_text(option)[:30] for option in draft.options if clean_game_text(option)][:4]
    change = max(-10, min(10, draft.relationship_change))
    record = RecordRequest(
        profile=profile,
        memories=[
            # What was said stays apart from the narration: later prompts quote it as data.
            Memory(
                memory_id=f"{sequence}-heard",
                kind="conversation",
                text=f"{turn.player.name} said:",
                words=turn.text,
                importance=4,
                emotion="neutral",
                about=party,
                created_at=now,
            ),
            Memory(
                memory_id=f"{sequence}-replied",
                kind="conversation",
                text=f"I told {turn.player.name}:",
                words=text,
                importance=3,
                emotion=draft.emotion,
                about=party,
                created_at=now,
            ),
        ],
        relationship_changes=[
            RelationshipChange(party=party, delta=change, change_id=f"talk-{turn_id}", reason="conversation")
        ],
        npc_fields={"action": "talking", "last_decision_ts": now.isoformat(), "players_near": plan.players_near_json},
    )
    reply_action = QueuedAction(
        action_id=f"{profile.npc_id}-talk-{turn_id}",
        npc_id=profile.npc_id,
        sequence=sequence,
        action=DialogueReplyAction(
            turn_id=turn_id, char_id=turn.player.char_id, text=text, emotion=draft.emotion, options=options
        ),
        map=profile.map,
        npc_name=profile.name,
        reason="reply to a player",
        created_at=now,
    )
    decided = DecisionRecord(
        sequence=sequence,
        decided_at=now,
        trigger="talk",
        event_ids=[turn_id],
        decision=Decision(mood=request.mood, activity="talking", reason=f"{turn.player.name} spoke to me"),
        usage=usage or DecisionUsage(),
        queued_action_ids=[reply_action.action_id],
        memory_ids=memory_ids,
    )
    write = OutcomeWrite(
        record=record, actions=[reply_action], decision=decided, budget_seconds=plan.save_budget_seconds
    )
    reply = TalkReply(
        text=text,
        emotion=draft.emotion,
        options=options,
        relationship_change=change,
        decided_by=usage.provider if usage else "offline",
    )
    return TalkOutcome(write=write, reply=reply)


class PreparedReply(BaseModel):
    reply: ReplyResult | None = None
    context: DialogueContext | None = None
    degraded: str | None = None
    memory_ids: list[str] = Field(default_factory=list)


class StoreUnavailable(ApplicationError):
    """The state store failed or did not answer within the write's budget."""

    def __init__(self, why: str) -> None:
        super().__init__(why, type="StoreUnavailable")


def situation_of(request: ContextRequest) -> str | None:
    """What the memories are searched for: the player's line, else what just happened."""
    if request.turn is not None:
        return request.turn.text
    said = []
    for event in request.events:
        who = event.player.name if event.player else event.other_npc_id
        said.append(" ".join(part for part in (who, event.kind.value.replace("_", " "), event.text) if part))
    return "; ".join(said) or None


class NpcActivities:
    def __init__(
        self,
        memory: MemoryStore,
        actions: ActionQueue,
        brain: DecisionMaker,
        feed: WorldFeed,
        metrics: WorkerMetrics | None = None,
        gate: PriorityGate | None = None,
    ) -> None:
        self._memory = memory
        self._actions = actions
        self._brain = brain
        self._feed = feed
        self._gossip = Gossip(memory.redis, memory.keys, memory.settings)
        self._meetings = Meetings(memory)
        self.metrics = metrics or WorkerMetrics()
        # Shared by every NPC of this worker: background turns wait, a player's line does not.
        self.gate = gate or PriorityGate(slots=0, max_wait=0)

    @activity.defn
    async def load_npc_context(self, request: ContextRequest) -> NpcContext:
        """A fast idempotent read of the state store; run as a local activity."""
        return NpcContext(**await self._context_fields(request))

    @activity.defn
    async def load_dialogue_context(self, request: ContextRequest) -> DialogueContext:
        """The same read, for a player's line: their memories rank first."""
        if request.turn is None:
            raise ApplicationError("a dialogue context needs the player's turn", non_retryable=True)
        return DialogueContext(**await self._context_fields(request), turn=request.turn)

    async def _context_fields(self, request: ContextRequest) -> dict:
        """The request's facts plus what the store knows. A store that fails or is slow costs the
        NPC its memories for this one decision, not the decision: the context says it is
        `degraded` instead of the activity failing (and it stays within its own time budget)."""
        npc_id = request.profile.npc_id
        parties = {f"player:{player.char_id}" for player in request.players_near}
        parties.update(f"player:{event.player.char_id}" for event in request.events if event.player)
        parties.update(f"npc:{event.other_npc_id}" for event in request.events if event.other_npc_id)
        if request.about:
            parties.add(request.about)
        fields = request.model_dump(exclude={"about", "turn", "budget_seconds"})
        try:
            async with asyncio.timeout(request.budget_seconds):
                # Side by side: the context waits for the slowest read, not for their sum.
                memories, relationships, world = await asyncio.gather(
                    self._memory.recall(npc_id, now=request.now, about=request.about, query=situation_of(request)),
                    self._memory.relationships(npc_id, sorted(parties)),
                    self._memory.world_state(),
                )
                fields.update(memories=memories, relationships=relationships, world=world)
        except (RedisError, OSError, TimeoutError) as error:
            activity.logger.warning("state store unavailable, context without memories: %r", error)
            fields["degraded"] = f"state store unavailable: {type(error).__name__}"
        return fields

    @activity.defn
    async def prepare_decision(self, request: ContextRequest) -> PreparedDecision:
        """Local activity: the context, and the decision too when the decision maker is local."""
        context = NpcContext(**await self._context_fields(request))
        used = [memory.memory_id for memory in context.memories]
        if self._brain.decides_locally("routine"):
            result = await self._brain.decide(context)
            self.metrics.usage(result.usage)
            return PreparedDecision(result=result, degraded=context.degraded, memory_ids=used)
        return PreparedDecision(context=context, degraded=context.degraded, memory_ids=used)

    @activity.defn
    async def prepare_reply(self, request: ContextRequest) -> PreparedReply:
        """Local activity: the dialogue context, and the reply too when the decision maker is local."""
        if request.turn is None:
            raise ApplicationError("a dialogue context needs the player's turn", non_retryable=True)
        context = DialogueContext(**await self._context_fields(request), turn=request.turn)
        used = [memory.memory_id for memory in context.memories]
        if self._brain.decides_locally("dialogue"):
            draft, usage = await self._brain.converse(context)
            self.metrics.usage(usage)
            return PreparedReply(
                reply=ReplyResult(draft=draft, usage=usage), degraded=context.degraded, memory_ids=used
            )
        return PreparedReply(context=context, degraded=context.degraded, memory_ids=used)

    @activity.defn
    async def decide_and_save(self, plan: DecisionPlan) -> DecidedAndSaved:
        """Local activity: the context, the decision and its writes in one, when the decision maker
        is local: one activation and one history marker per decision instead of two. A store that
        fails costs the context its memories (`degraded`) and the writes their moment: they come
        back `unsaved`, for the workflow to keep and write later, never lost."""
        async with self.gate.turn(Turn.EVENT):
            return await self._decide_and_save(plan)

    async def _decide_and_save(self, plan: DecisionPlan) -> DecidedAndSaved:
        request = plan.request
        context = NpcContext(**await self._context_fields(request))
        used = [memory.memory_id for memory in context.memories]
        if not self._brain.decides_locally("routine"):
            return DecidedAndSaved(context=context, degraded=context.degraded, memory_ids=used)
        result = await self._brain.decide(context)
        self.metrics.usage(result.usage)
        # The writes' budget starts now: the context's may have been spent on a slow store.
        outcome = outcome_of(plan, result, used, request.now, plan.save_budget_seconds)
        write = outcome.write
        assert write.record is not None and write.decision is not None
        done = DecidedAndSaved(
            decided=write.decision,
            lived=lived_of(write.record.memories),
            rejected=outcome.rejected,
            degraded=context.degraded,
            memory_ids=used,
        )
        try:
            await self._save(write)
        except StoreUnavailable as error:
            activity.logger.warning("the state store refused a decision's writes; the NPC keeps them: %s", error)
            return done.model_copy(update={"unsaved": write, "store_error": str(error)})
        return done

    @activity.defn
    async def reply_and_save(self, plan: ReplyPlan) -> RepliedAndSaved:
        """Local activity: a player's line answered and written in one, when the decision maker
        replies locally (a player waits: one activation less before the answer). Writes the store
        refuses, or that may not be tried, come back `unsaved` for the workflow to keep."""
        request = plan.request
        if request.turn is None:
            raise ApplicationError("a reply needs the player's turn", non_retryable=True)
        context = DialogueContext(**await self._context_fields(request), turn=request.turn)
        used = [memory.memory_id for memory in context.memories]
        if not self._brain.decides_locally("dialogue"):
            return RepliedAndSaved(context=context, degraded=context.degraded, memory_ids=used)
        draft, usage = await self._brain.converse(context)
        self.metrics.usage(usage)
        outcome = talk_outcome_of(plan, draft, usage, used, request.now)
        write = outcome.write
        assert write.record is not None and write.decision is not None
        done = RepliedAndSaved(
            reply=outcome.reply,
            decided=write.decision,
            lived=lived_of(write.record.memories),
            degraded=context.degraded,
            memory_ids=used,
        )
        if not plan.write:
            return done.model_copy(update={"unsaved": write, "store_error": "the state store is known to be down"})
        try:
            scores = await self._save(write)
        except StoreUnavailable as error:
            activity.logger.warning("the state store refused a talk turn's writes; the NPC keeps them: %s", error)
            return done.model_copy(update={"unsaved": write, "store_error": str(error)})
        party = f"player:{request.turn.player.char_id}"
        return done.model_copy(
            update={"reply": outcome.reply.model_copy(update={"relationship": scores.get(party, 0)})}
        )

    @activity.defn
    async def save_outcome(self, write: OutcomeWrite) -> dict[str, int]:
        """Local activity: a decision's memories, relationship changes, public fields and actions in
        one go, each idempotent, then the world feed's entries for them. Returns the parties'
        relationship scores. Then the NPC meets its neighbours when the write asks for it."""
        async with self.gate.turn(turn_of(write)):
            return await self._save(write)

    async def _save(self, write: OutcomeWrite) -> dict[str, int]:
        deadline = asyncio.get_running_loop().time() + write.budget_seconds
        try:
            async with asyncio.timeout_at(deadline):
                scores = await self.record_outcome(write.record) if write.record else {}
                await self.enqueue_actions(write.actions)
                appended = await self._feed.publish(self._feed_entries(write))
        except (RedisError, OSError, TimeoutError) as error:
            raise StoreUnavailable(f"state store unavailable: {type(error).__name__}") from None
        # Counted with the feed's once-per-id appends, so a re-run save counts nothing twice.
        decision = write.decision
        self.metrics.saved(
            decision if decision is not None and _decision_entry_id(write) in appended else None,
            [queued for queued in write.actions if queued.action_id in appended],
        )
        if write.meeting is not None:
            await self._meet(write.meeting, deadline)
        return scores

    async def _meet(self, request: MeetingRequest, deadline: float) -> None:
        """The decision is saved: a meeting that fails (the store, a neighbour's corrupt record, a
        fault of ours) is a missed chat, never a reason to write the decision again or to hold the
        NPC's next events behind it. It stays in the worker's log."""
        try:
            async with asyncio.timeout_at(deadline):
                await self._meetings.meet(request)
        except Exception as error:
            activity.logger.warning("meeting the neighbours failed: %r", error)

    @staticmethod
    def _feed_entries(write: OutcomeWrite) -> list[dict]:
        entries = [action_entry(queued) for queued in write.actions]
        if write.record is not None and write.decision is not None:
            profile = write.record.profile
            entries.append(decision_entry(profile.npc_id, profile.map, write.record.npc_fields, write.decision))
        return entries

    @activity.defn
    async def decide_next_action(self, context: NpcContext) -> DecisionResult:
        result = await self._brain.decide(context)
        self.metrics.usage(result.usage)
        return result

    @activity.defn
    async def compose_reply(self, context: DialogueContext) -> ReplyResult:
        draft, usage = await self._brain.converse(context)
        self.metrics.usage(usage)
        return ReplyResult(draft=draft, usage=usage)

    @activity.defn
    async def record_outcome(self, request: RecordRequest) -> dict[str, int]:
        """Store memories and relationship changes once; returns the parties' scores now."""
        npc_id = request.profile.npc_id
        await self._memory.remember_all(npc_id, request.memories)
        await self._gossip.learned(npc_id, request.memories)
        when = max((memory.created_at for memory in request.memories), default=None)
        moves = [
            RelationshipMove(
                npc_id, change.party, change.delta, change.change_id, change.reason, when or datetime.now(UTC)
            )
            for change in request.relationship_changes
        ]
        scores = dict(zip([move.party for move in moves], await self._memory.adjust_relationships(moves), strict=True))
        if request.npc_fields:
            await self._memory.publish_npc(request.profile, request.npc_fields)
        if when is not None:  # the NPC's game day moved on, or it holds more than its cap
            await maybe_consolidate(self._memory, npc_id, when)
        return scores

    @activity.defn
    async def enqueue_actions(self, actions: list[QueuedAction]) -> list[str]:
        """Queue each action once; returns the ids this call added (others were already there)."""
        added = await self._actions.enqueue_all(actions)
        return [action.action_id for action, queued in zip(actions, added, strict=True) if queued]

    def all(self) -> list:
        # load_npc_context, load_dialogue_context, record_outcome and enqueue_actions serve NPC
        # runs that began before the local pipeline (workflow patch "local-pipeline"), and
        # prepare_decision and prepare_reply those that began before "decide-and-save", until their next
        # continue-as-new.
        return [
            self.decide_and_save,
            self.reply_and_save,
            self.prepare_decision,
            self.prepare_reply,
            self.save_outcome,
            self.decide_next_action,
            self.compose_reply,
            self.load_npc_context,
            self.load_dialogue_context,
            self.record_outcome,
            self.enqueue_actions,
        ]


def turn_of(write: OutcomeWrite) -> Turn:
    """A talk turn's writes (an LLM replied) go ahead of everything, an event decision's ahead of
    the routine's and of events only remembered."""
    trigger = write.decision.trigger if write.decision is not None else None
    if trigger == "talk":
        return Turn.TALK
    return Turn.EVENT if trigger == "events" else Turn.ROUTINE


def _decision_entry_id(write: OutcomeWrite) -> str | None:
    if write.record is None or write.decision is None:
        return None
    return decision_entry_id(write.record.profile.npc_id, write.decision.sequence)
