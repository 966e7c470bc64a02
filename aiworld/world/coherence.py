"""The coherence monitor: the world's invariants, checked, and repaired where that is safe.

Each check has a name and returns how many things broke its invariant, how many were repaired,
and a few examples. Repairs are conservative and idempotent: an NPC out of place is walked back
by a queued `move` action, a dead action is expired with its reason recorded, a wrong belief is
corrected by telling the NPC the news (a `world_event` whose id is derived from the fact, so
telling it twice is one event), a value out of bounds is clamped, a damaged record is set aside.
What cannot be repaired safely is reported. The schedule `world-coherence` runs the checks
(workflows/coherence.py); the last report is kept in the state store for `GET /ai/world/coherence`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, cast, get_args

import redis.asyncio as redis
from pydantic import BaseModel, Field, ValidationError
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)
from temporalio.service import RPCError, RPCStatusCode

from aiworld.config import CoherenceSettings
from aiworld.memory.store import MemoryStore
from aiworld.models import (
    Decision,
    GameEvent,
    GameEventKind,
    Memory,
    MoveAction,
    NpcProfile,
    QueuedAction,
    TradeAction,
    describe_invalid,
)
from aiworld.npc.control import ensure_npc_started
from aiworld.npc.rules import validate_decision
from aiworld.store.action_queue import ActionQueue, ConflictingResult, UnknownAction
from aiworld.store.keys import Keys, text_of
from aiworld.temporal import npc_workflow_id
from aiworld.world.directory import NpcDirectory
from aiworld.world.schedules import apply_schedule

log = logging.getLogger(__name__)

SCHEDULE_NAME = "world-coherence"
WORKFLOW_TYPE = "CoherenceCheckWorkflow"
# A run is short; one that takes longer than this is stuck and the next may start.
RUN_TIMEOUT = timedelta(minutes=30)
QUERY_TIMEOUT = timedelta(seconds=5)
MAX_PRICE = 1_000_000_000  # rAthena's zeny limit
RELATION_BOUNDS = (-100, 100)
WORLD_SYSTEMS = ("economy", "politics", "environment")
BELIEF_MEMORIES_SCANNED = 200
QUARANTINE_SECONDS = 14 * 24 * 3600
CORRECTION_IMPORTANCE = 3  # below a decision's significance: remembered, no LLM call
_PAUSED = 8  # WORKFLOW_EXECUTION_STATUS_PAUSED, newer than the SDK's enum
_LIVING = {WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING, _PAUSED}
_BROKEN = {
    WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_FAILED,
    WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_TERMINATED,
    WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_TIMED_OUT,
    WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_CANCELED,
}


class Finding(BaseModel):
    subject: str
    problem: str
    # What was done about it; None: nothing could be done safely, an operator should look.
    repair: str | None = None


class CheckResult(BaseModel):
    name: str
    found: int = 0
    repaired: int = 0
    unrepaired: int = 0
    examples: list[Finding] = Field(default_factory=list)
    # The check itself could not run (its activity failed for good): why.
    error: str | None = None


class CoherenceReport(BaseModel):
    run_id: str
    started_at: datetime
    finished_at: datetime
    checks: list[CheckResult]

    @property
    def found(self) -> int:
        return sum(check.found for check in self.checks)

    def summary(self) -> str:
        """Markdown for the run's details in the Temporal UI."""
        lines = [f"**Coherence** {self.finished_at:%Y-%m-%d %H:%M:%S} UTC: {self.found} finding(s)", ""]
        lines += ["| check | found | repaired | reported |", "|---|---|---|---|"]
        for check in self.checks:
            found = "error: " + check.error if check.error else str(check.found)
            lines.append(f"| {check.name} | {found} | {check.repaired} | {check.unrepaired} |")
        for check in self.checks:
            for example in check.examples:
                done = example.repair or "reported: not repaired"
                lines.append(f"- {check.name}: {example.subject}: {example.problem} ({done})")
        return "\n".join(lines)


# In the order they run: NPCs restarted first, so that their actions are not taken for orphans.
CheckName = Literal[
    "npc_workflows",
    "npc_out_of_place",
    "dead_letters",
    "orphan_actions",
    "invalid_records",
    "world_values_out_of_bounds",
    "shop_price_drift",
    "stale_beliefs",
]
CHECKS: list[CheckName] = list(get_args(CheckName))


class CheckRequest(BaseModel):
    name: CheckName
    # Distinguishes this run's repairs (action ids) from another run's; the same on a retry.
    run_key: str = Field(pattern=r"^[A-Za-z0-9]{1,16}$")


class _Tally:
    def __init__(self, name: str, examples: int) -> None:
        self.result = CheckResult(name=name)
        self._examples = examples

    def add(self, subject: str, problem: str, repair: str | None) -> None:
        result = self.result
        result.found += 1
        if repair is None:
            result.unrepaired += 1
        else:
            result.repaired += 1
        if len(result.examples) < self._examples:
            result.examples.append(Finding(subject=subject, problem=problem, repair=repair))


@dataclass
class Census:
    """Every NPC the directory lists, by what its workflow is doing."""

    living: dict[str, NpcProfile]
    status: dict[str, int | None]  # None: no workflow was ever started


class CoherenceMonitor:
    def __init__(
        self,
        client: Client,
        store: redis.Redis,
        keys: Keys,
        task_queue: str,
        settings: CoherenceSettings,
        known_profiles: list[NpcProfile],
    ) -> None:
        self._client = client
        self._redis = store
        self._keys = keys
        self._task_queue = task_queue
        self._settings = settings
        self._known = {profile.npc_id: profile for profile in known_profiles}
        self._directory = NpcDirectory(store, keys)
        self._queue = ActionQueue(store, keys)
        self._memory = MemoryStore(store, keys)
        self._checks: dict[str, Callable[[_Tally, str], Awaitable[None]]] = {
            "npc_workflows": self._npc_workflows,
            "npc_out_of_place": self._npc_out_of_place,
            "dead_letters": self._dead_letters,
            "orphan_actions": self._orphan_actions,
            "invalid_records": self._invalid_records,
            "world_values_out_of_bounds": self._world_values,
            "shop_price_drift": self._shop_prices,
            "stale_beliefs": self._stale_beliefs,
        }
        assert list(self._checks) == CHECKS

    async def run_check(self, request: CheckRequest) -> CheckResult:
        tally = _Tally(request.name, self._settings.examples_per_check)
        await self._checks[request.name](tally, request.run_key)
        return tally.result

    async def save_report(self, report: CoherenceReport) -> None:
        await self._redis.set(self._keys.coherence_report(), report.model_dump_json())

    async def last_report(self) -> CoherenceReport | None:
        raw = await self._redis.get(self._keys.coherence_report())
        return CoherenceReport.model_validate_json(raw) if raw else None

    # --- who lives ----------------------------------------------------------------------------

    async def _status(self, npc_id: str) -> int | None:
        try:
            described = await self._client.workflow_service.describe_workflow_execution(
                DescribeWorkflowExecutionRequest(
                    namespace=self._client.namespace,
                    execution=WorkflowExecution(workflow_id=npc_workflow_id(npc_id)),
                )
            )
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND:
                return None
            raise
        return described.workflow_execution_info.status

    async def _census(self) -> Census:
        living: dict[str, NpcProfile] = {}
        status: dict[str, int | None] = {}
        for npc_id in sorted(await self._directory.everyone()):
            status[npc_id] = await self._status(npc_id)
            if status[npc_id] == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING:
                handle = self._client.get_workflow_handle(npc_workflow_id(npc_id))
                try:
                    living[npc_id] = await handle.query("profile", result_type=NpcProfile, rpc_timeout=QUERY_TIMEOUT)
                except RPCError as error:  # a worker too busy to answer: checked next run
                    log.warning("coherence: %s did not answer its profile query: %s", npc_id, error.message)
        return Census(living=living, status=status)

    async def _last_profile(self, npc_id: str) -> NpcProfile | None:
        """Who an NPC whose workflow ended was, from the input of its last run."""
        handle = self._client.get_workflow_handle(npc_workflow_id(npc_id))
        async for event in handle.fetch_history_events():
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            (life,) = await self._client.data_converter.decode(payloads, [dict])
            try:
                return NpcProfile.model_validate((life.get("state") or life)["profile"])
            except (KeyError, TypeError, ValidationError):
                return None
        return None

    # --- the checks ---------------------------------------------------------------------------

    async def _npc_workflows(self, tally: _Tally, run_key: str) -> None:
        """NPCs the directory lists whose workflow failed, was terminated or never started are
        started again from who they were; a retired NPC leaves the directory."""
        census = await self._census()
        for npc_id, status in census.status.items():
            subject = f"npc:{npc_id}"
            if status in _LIVING:
                continue
            if status == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_COMPLETED:
                await self._directory.remove(npc_id)
                tally.add(subject, "retired but still listed in the directory", "removed from the directory")
                continue
            if status is None:
                problem = "registered in the directory but no workflow ever ran"
                profile = self._known.get(npc_id)
            else:
                problem = f"workflow {WorkflowExecutionStatus.Name(WorkflowExecutionStatus.ValueType(status)).removeprefix('WORKFLOW_EXECUTION_STATUS_').lower()}"
                profile = await self._last_profile(npc_id) or self._known.get(npc_id)
            if profile is None:
                tally.add(subject, problem + "; no profile is known to start it from", None)
                continue
            await ensure_npc_started(self._client, profile, self._task_queue)
            tally.add(subject, problem, f"life started again as {npc_workflow_id(npc_id)}")

    async def _npc_out_of_place(self, tally: _Tally, run_key: str) -> None:
        """An NPC's public position must lie on its map and in its area."""
        census = await self._census()
        listed = await self._directory.everyone()
        for npc_id, profile in census.living.items():
            public = {text_of(k): text_of(v) for k, v in (await self._redis.hgetall(self._keys.npc(npc_id))).items()}
            if not public:
                continue
            assert profile.area is not None
            problems = []
            if public.get("map") != profile.map or listed.get(npc_id) != profile.map:
                problems.append(f"listed on {public.get('map')}/{listed.get(npc_id)}, lives on {profile.map}")
            try:
                x, y = int(public.get("x", "")), int(public.get("y", ""))
            except ValueError:
                x, y = -1, -1
            outside = not profile.area.contains(x, y)
            if outside:
                area = profile.area
                problems.append(f"at ({x},{y}), outside its area ({area.x1},{area.y1})-({area.x2},{area.y2})")
            if not problems:
                continue
            repairs = []
            if outside:
                await self._queue.enqueue(
                    QueuedAction(
                        action_id=f"{npc_id}-coh-{run_key}-move",
                        npc_id=npc_id,
                        sequence=0,
                        action=MoveAction(x=profile.x, y=profile.y),
                        map=profile.map,
                        npc_name=profile.name,
                        reason="the coherence monitor moved it back to its post",
                        created_at=datetime.now(UTC),
                    )
                )
                repairs.append(f"move to ({profile.x},{profile.y}) queued")
            # The directory reads the NPC's last map from its hash: place first, then rewrite it.
            await self._directory.place(npc_id, profile.map, profile.x, profile.y, profile.faction)
            await self._redis.hset(self._keys.npc(npc_id), mapping={"map": profile.map, "x": profile.x, "y": profile.y})
            repairs.append(f"listed at {profile.map} ({profile.x},{profile.y})")
            tally.add(f"npc:{npc_id}", "; ".join(problems), "; ".join(repairs))

    async def _ready_actions(self) -> list[tuple[str, float, dict[str, str]]]:
        entries = await self._redis.zrange(self._keys.ready_actions(), 0, -1, withscores=True)
        actions = []
        for action_id, score in cast(list[tuple[bytes | str, float]], entries):
            fields = await self._redis.hgetall(self._keys.action(text_of(action_id)))
            actions.append((text_of(action_id), float(score), {text_of(k): text_of(v) for k, v in fields.items()}))
        return actions

    async def _expire(self, tally: _Tally, action_id: str, problem: str, reason: str) -> None:
        try:
            await self._queue.complete(action_id, "failed", f"expired by the coherence monitor: {reason}")
        except (UnknownAction, ConflictingResult):  # reported meanwhile: nothing left to do
            return
        tally.add(f"action:{action_id}", problem, f"expired as failed ({reason})")

    async def _dead_letters(self, tally: _Tally, run_key: str) -> None:
        """An action leased many times whose lease ran out again, never reported: the game will
        not run it. It is expired, with the reason on the action."""
        now = datetime.now(UTC).timestamp()
        limit = self._settings.dead_letter_attempts
        for action_id, offered_from, fields in await self._ready_actions():
            attempts = int(fields.get("attempts", "0") or 0)
            if fields.get("status") == "leased" and attempts >= limit and offered_from <= now:
                why = f"leased {attempts} times and never reported"
                await self._expire(tally, action_id, why, why)

    async def _orphan_actions(self, tally: _Tally, run_key: str) -> None:
        """An action queued for an NPC that no longer lives will never be reported."""
        statuses: dict[str, int | None] = {}
        for action_id, _, fields in await self._ready_actions():
            npc_id = fields.get("npc_id")
            if not npc_id:
                continue
            if npc_id not in statuses:
                statuses[npc_id] = await self._status(npc_id)
            if statuses[npc_id] not in _LIVING:
                await self._expire(
                    tally, action_id, f"queued for {npc_id}, who no longer lives", "its NPC no longer lives"
                )

    async def _invalid_records(self, tally: _Tally, run_key: str) -> None:
        """Memories that fail their schema are set aside (kept a while for a look); relationship
        scores that are not numbers are removed, those out of -100..100 are clamped."""
        for npc_id in sorted(await self._directory.everyone()):
            for raw_id in await self._redis.zrange(self._keys.memory_index(npc_id), 0, -1):
                memory_id = text_of(raw_id)
                key = self._keys.memory(npc_id, memory_id)
                raw = await self._redis.hget(key, "json")
                try:
                    if raw is None:
                        raise ValueError("the record is missing")
                    Memory.model_validate_json(raw)
                    continue
                except ValidationError as error:
                    problem = f"memory {memory_id} fails its schema: {describe_invalid(error)[:160]}"
                except ValueError as error:
                    problem = f"memory {memory_id}: {error}"
                quarantine = self._keys.quarantined_memory(npc_id, memory_id)
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.zrem(self._keys.memory_index(npc_id), memory_id)
                    pipe.hdel(self._keys.memory_cues(npc_id), memory_id)
                    pipe.hdel(self._keys.memory_vectors(npc_id), memory_id)
                    if raw is not None:
                        pipe.hset(quarantine, mapping={"json": raw, "why": problem})
                        pipe.expire(quarantine, QUARANTINE_SECONDS)
                        pipe.delete(key)
                    await pipe.execute()
                tally.add(f"npc:{npc_id}", problem, "set aside, no longer recalled")
            scores = await self._redis.hgetall(self._keys.relationships(npc_id))
            for raw_party, raw_value in scores.items():
                party, value = text_of(raw_party), text_of(raw_value)
                subject = f"relationships:{npc_id} {party}"
                try:
                    score = int(value)
                except ValueError:
                    await self._redis.hdel(self._keys.relationships(npc_id), party)
                    tally.add(subject, f"score {value!r} is not a number", "removed (counts as 0)")
                    continue
                low, high = RELATION_BOUNDS
                if not low <= score <= high:
                    clamped = min(max(score, low), high)
                    await self._redis.hset(self._keys.relationships(npc_id), party, clamped)
                    tally.add(subject, f"score {score} outside {low}..{high}", f"clamped to {clamped}")

    async def _factions(self) -> list[str]:
        names = set()
        pattern = self._keys.faction("*")
        async for key in self._redis.scan_iter(match=pattern, count=500):
            name = text_of(key)[len(self._keys.faction("")) :]
            if ":" not in name:  # not `faction:{id}:members`
                names.add(name)
        return sorted(names)

    async def _world_values(self, tally: _Tally, run_key: str) -> None:
        """Prices are whole zeny in 1..MAX_PRICE, relations whole numbers in -100..100. Numbers
        out of bounds are clamped; what is no number at all is removed, so the world system that
        owns it computes it afresh from its defaults."""
        hashes = [(self._keys.world("economy"), "price:", (1, MAX_PRICE))]
        hashes.append((self._keys.world("politics"), "relation:", RELATION_BOUNDS))
        hashes += [(self._keys.faction(name), "relation:", RELATION_BOUNDS) for name in await self._factions()]
        for key, prefix, (low, high) in hashes:
            for raw_field, raw_value in (await self._redis.hgetall(key)).items():
                field, value = text_of(raw_field), text_of(raw_value)
                if not field.startswith(prefix):
                    continue
                subject = f"{key.removeprefix(self._keys.prefix)} {field}"
                try:
                    number = int(value)
                except ValueError:
                    await self._redis.hdel(key, field)
                    tally.add(subject, f"{value!r} is not a whole number", "removed: its system computes it again")
                    continue
                if not low <= number <= high:
                    clamped = min(max(number, low), high)
                    await self._redis.hset(key, field, clamped)
                    tally.add(subject, f"{number} outside {low}..{high}", f"clamped to {clamped}")

    async def _shop_prices(self, tally: _Tally, run_key: str) -> None:
        """A merchant's price (the last one the game confirmed, `shop:{item}` of `npc:{id}`, else the base
        of its shop) within a factor of the economy's price; else the shop is repriced by a
        queued `trade` action, within the game rules' price limits."""
        census = await self._census()
        economy = {text_of(k): text_of(v) for k, v in (await self._redis.hgetall(self._keys.world("economy"))).items()}
        factor = self._settings.shop_price_factor
        for npc_id, profile in census.living.items():
            for item in profile.shop:
                try:
                    market = int(economy.get(f"price:{item.item_id}", ""))
                except ValueError:
                    continue
                current_raw = await self._redis.hget(self._keys.npc(npc_id), f"shop:{item.item_id}")
                current = (
                    int(text_of(current_raw)) if current_raw and text_of(current_raw).isdigit() else item.base_price
                )
                if market <= 0 or market / factor <= current <= market * factor:
                    continue
                subject = f"npc:{npc_id} item {item.item_id}"
                problem = f"sells at {current}, the economy's price is {market}"
                # Within the game rules' price floor and ceiling, as the NPC's own repricing would be.
                verdict = validate_decision(
                    Decision(actions=[TradeAction(item_id=item.item_id, price=market)]), profile, involved=set()
                )
                accepted = verdict.accepted[0] if verdict.accepted else None
                if not isinstance(accepted, TradeAction):
                    tally.add(subject, problem + "; " + "; ".join(verdict.rejections), None)
                    continue
                price = accepted.price
                if not market / factor <= price <= market * factor:
                    tally.add(subject, problem + f"; the game rules allow no closer price than {price}", None)
                    continue
                await self._queue.enqueue(
                    QueuedAction(
                        action_id=f"{npc_id}-coh-{run_key}-price-{item.item_id}",
                        npc_id=npc_id,
                        sequence=0,
                        action=TradeAction(item_id=item.item_id, price=price),
                        map=profile.map,
                        npc_name=profile.name,
                        reason="the coherence monitor repriced the shop to the market",
                        created_at=datetime.now(UTC),
                    )
                )
                await self._redis.hset(self._keys.npc(npc_id), f"shop:{item.item_id}", price)
                tally.add(subject, problem, f"repriced to {price} (trade action queued)")

    async def _stale_beliefs(self, tally: _Tally, run_key: str) -> None:
        """What an NPC last heard of a world value (a memory's `facts` named `{system}.{field}`,
        e.g. `economy.price:512`) against the world now. A belief the world has since changed is
        corrected by telling the NPC the news, under an id derived from the fact, once."""
        census = await self._census()
        world = {system: await self._redis.hgetall(self._keys.world(system)) for system in WORLD_SYSTEMS}
        for npc_id in census.living:
            beliefs: dict[str, tuple[datetime, str | int | float]] = {}
            memory_ids = await self._redis.zrevrange(self._keys.memory_index(npc_id), 0, BELIEF_MEMORIES_SCANNED - 1)
            for memory_id in memory_ids:
                raw = await self._redis.hget(self._keys.memory(npc_id, text_of(memory_id)), "json")
                try:
                    memory = Memory.model_validate_json(raw) if raw else None
                except ValidationError:
                    continue  # invalid_records sets it aside
                for fact, value in ((memory.facts or {}) if memory else {}).items():
                    assert memory is not None
                    if fact not in beliefs or beliefs[fact][0] < memory.created_at:
                        beliefs[fact] = (memory.created_at, value)
            for fact, (_, believed) in sorted(beliefs.items()):
                system, _, field = fact.partition(".")
                values = {text_of(k): text_of(v) for k, v in world.get(system, {}).items()}
                if system not in WORLD_SYSTEMS or field not in values or _same(believed, values[field]):
                    continue
                actual = _typed(values[field])
                digest = hashlib.sha256(json.dumps([fact, actual]).encode()).hexdigest()[:16]
                event = GameEvent(
                    event_id=f"coherence.{digest}:{npc_id}",
                    kind=GameEventKind.WORLD_EVENT,
                    text=f"Word is that {field.replace(':', ' ')} in the {system} is now {actual}."[:200],
                    importance=CORRECTION_IMPORTANCE,
                    detail="coherence",
                    facts={fact: actual},
                    occurred_at=datetime.now(UTC),
                )
                await self._client.get_workflow_handle(npc_workflow_id(npc_id)).signal("game_event", event)
                tally.add(f"npc:{npc_id} {fact}", f"believes {believed!r}, the world says {actual!r}", "told the news")


def _typed(value: str) -> str | int | float:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value


def _same(believed: str | int | float, actual: str) -> bool:
    typed = _typed(actual)
    if isinstance(believed, (int, float)) and isinstance(typed, (int, float)):
        return float(believed) == float(typed)
    return str(believed) == actual


# --- the schedule ---------------------------------------------------------------------------------


def schedule_id(prefix: str = "") -> str:
    return f"{prefix}{SCHEDULE_NAME}"


def coherence_schedule(settings: CoherenceSettings, task_queue: str, prefix: str = "") -> Schedule:
    every = timedelta(seconds=settings.interval_seconds)
    return Schedule(
        action=ScheduleActionStartWorkflow(
            WORKFLOW_TYPE,
            id=schedule_id(prefix),
            task_queue=task_queue,
            run_timeout=RUN_TIMEOUT,
            static_summary="Coherence check: the world's invariants, repaired or reported",
            static_details=f"every {every}; the last report at GET /ai/world/coherence",
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def apply_coherence_schedule(
    client: Client, settings: CoherenceSettings, task_queue: str, prefix: str = ""
) -> str:
    """Create the `world-coherence` schedule, or update it to the settings (an operator's pause
    stays); returns "created" or "updated"."""
    return await apply_schedule(client, schedule_id(prefix), coherence_schedule(settings, task_queue, prefix))
