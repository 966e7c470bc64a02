"""The state an NPC's life carries from one run to the next through continue-as-new."""

from __future__ import annotations

from collections import deque
from datetime import datetime

from pydantic import BaseModel, Field

from activities.npc_activities import OutcomeWrite
from aiworld.models import DecisionRecord, GameEvent, NpcProfile, PlayerRef

# Ids of processed events kept to drop redeliveries; far more than can arrive between two checks.
PROCESSED_EVENT_MEMORY = 1000
RECENT_DECISIONS_KEPT = 20
# Recent decisions' activities a decision is told of (so that it does not repeat itself).
RECENT_ACTIONS_TOLD = 5
# Memory ids a reflection may cite: the newest of what was lived since the last one.
REFLECTION_EVIDENCE_KEPT = 60


class PlayerPresence(BaseModel):
    player: PlayerRef
    since: datetime


class NpcLifeState(BaseModel):
    profile: NpcProfile
    mood: str = "calm"
    activity: str = "idling"
    activity_reason: str = "just arrived"
    pending_events: list[GameEvent] = Field(default_factory=list)
    processed_event_ids: list[str] = Field(default_factory=list)
    players_near: dict[int, PlayerPresence] = Field(default_factory=dict)
    decision_sequence: int = 0
    events_processed: int = 0
    rejected_decisions: int = 0
    # Decisions on events, by who made them: an LLM, or the offline policy (configured so, or
    # the last link of the LLM chain).
    llm_decisions: int = 0
    policy_decisions: int = 0
    routine_decisions: int = 0
    # Decisions and replies made without the decision maker or without the NPC's memories
    # because an activity failed for good (a store or provider outage).
    fallbacks: int = 0
    routine_step: int = 0
    recent_decisions: list[DecisionRecord] = Field(default_factory=list)
    # What the search attributes were last set to, so they are upserted only on change.
    published_attributes: dict[str, str] = Field(default_factory=dict)
    published_at: datetime | None = None
    # Routine steps since the last event: each one stretches the cadence (see NpcLifeWorkflow).
    quiet_steps: int = 0
    # How much longer the NPC waits between routine steps while the LLM budget is tight, as the
    # budget governor's last decision for it said (DecisionUsage.cadence_stretch).
    cadence_stretch: float = 1.0
    # How much longer the NPC waits between routine steps while the worker runs behind: a routine
    # wake that comes late doubles it, one on time halves it (see NpcLifeWorkflow._pace_routine).
    load_stretch: float = 1.0
    retired: bool = False
    # Writes the state store refused, oldest first; while any is here the NPC waits for the store.
    unsaved: list[OutcomeWrite] = Field(default_factory=list)
    store_failures: int = 0
    runs: int = 1
    # Reflection: the importance lived since the last one, and the memories it would rest on.
    importance_since_reflection: int = 0
    reflection_evidence: list[str] = Field(default_factory=list)
    reflections: int = 0
    # When the NPC last met its neighbours (greetings and news are capped in the store too).
    last_meeting_at: datetime | None = None


class NpcLifeInput(BaseModel):
    profile: NpcProfile
    state: NpcLifeState | None = None
    # Continue-as-new once the history is this long, well before the server's own suggestion
    # (thousands of events): the worker holds what a run did until the run ends, 12-19 KB per
    # decision measured (README "Benchmarks"; mostly its local activities' inputs and results), and
    # a decision is about seven events. Tests lower it to see several runs. None: only when the
    # server suggests it.
    history_length_limit: int | None = Field(default=200, ge=100)


class RecentDecisions:
    """An NPC's last decisions while its run lives: each kept as its JSON, which the garbage
    collector never walks. As pydantic objects, 20 per NPC were about 25 tracked objects each:
    most of what a 1,000-NPC worker's full collections walked, and of their pauses (README
    "Benchmarks"). The state carries them as records from one run to the next."""

    def __init__(self, records: list[DecisionRecord]) -> None:
        self._kept: deque[str] = deque((record.model_dump_json() for record in records), maxlen=RECENT_DECISIONS_KEPT)
        self._actions: deque[str] = deque(map(_told, records[-RECENT_ACTIONS_TOLD:]), maxlen=RECENT_ACTIONS_TOLD)
        self.last: DecisionRecord | None = records[-1] if records else None

    def add(self, record: DecisionRecord) -> None:
        self._kept.append(record.model_dump_json())
        self._actions.append(_told(record))
        self.last = record

    def actions(self) -> list[str]:
        """The last few decisions as "activity: reason", oldest first."""
        return list(self._actions)

    def records(self) -> list[DecisionRecord]:
        return [DecisionRecord.model_validate_json(text) for text in self._kept]


def _told(record: DecisionRecord) -> str:
    return f"{record.decision.activity}: {record.decision.reason}"
