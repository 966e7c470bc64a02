"""The pipeline under load: the embedded stack as processes, driven through the HTTP API the way
rAthena's bridge drives it.

Temporal's dev server (SQLite file, WAL, as `aiworld dev` runs it), Redis, N `aiworld worker`
and M `aiworld api` processes run with the offline policy. The load generator registers NPCs
over five maps, offers game events at a fixed rate for a bounded time while players talk to
random NPCs, and plays the bridge: it polls `GET /ai/actions`, notes when each action was first
leasable, and reports each result.

How an event is matched to its action: every decision an NPC makes is kept in its
`recent_decisions` query as a DecisionRecord naming the events it was made from (`event_ids`),
when it was made (`decided_at`, the workflow task's time) and the actions it queued. After the
offer window the driver queries the NPCs whose events are not yet matched until each event is
found in a decision (or the drain time is up). So an event is *processed* at its decision's
`decided_at`, and its action is *leasable* when the bridge stand-in first leased one of that
decision's actions. Every generated event is significant (a new player arriving, an attack, a
gift, world news of importance 5), so each one leads to a decision of its own or shared with
events that arrived meanwhile; none is matched to a routine decision by coincidence of timing.
An NPC keeps its last 20 decisions: an event whose decision already fell out of that window is
counted as unmatched, not guessed.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from aiworld.temporal import npc_workflow_id
from benchmarks.measure import ProcessUse, describe_load, latency_summary, machine_load, process_use
from tests.processes import ServerProcess, free_port, redis_process, service_env, temporal_process

API_KEY = "bench-key"
TASK_QUEUE = "bench"
MAPS = ("prontera", "geffen", "payon", "morocc", "alberta")
# The event mix of issue 10: new players arriving, attacks, gifts, world news.
EVENT_MIX = (("arrival", 0.30), ("attack", 0.20), ("gift", 0.25), ("news", 0.25))
REQUEST_TIMEOUT = 30.0  # a talk that has no answer by then counts as a timeout
EVENTS_IN_FLIGHT = 500  # the generator waits for a free slot beyond this; the actual rate is reported
QUERY_CONCURRENCY = 8
STEP_DRAIN_POLL = 1.0


@dataclass
class PipelineStack:
    directory: Path
    workers: int = 1
    apis: int = 1
    temporal: ServerProcess = field(init=False)
    redis: ServerProcess = field(init=False)
    worker_processes: list[ServerProcess] = field(init=False)
    api_processes: list[ServerProcess] = field(init=False)

    def __post_init__(self) -> None:
        self.temporal = temporal_process(self.directory / "temporal")
        self.redis = redis_process(self.directory / "redis", sync_every_write=False)
        aiworld = [sys.executable, "-m", "aiworld.cli"]
        self.worker_processes = [
            ServerProcess(
                f"worker-{index}",
                lambda _: ([*aiworld, "worker"], self._env()),
                0,
                self.directory / f"worker-{index}.log",
            )
            for index in range(self.workers)
        ]
        self.api_processes = [
            ServerProcess(
                f"api-{index}",
                lambda port: (
                    [*aiworld, "api"],
                    self._env() | {"AIWORLD_API_HOST": "127.0.0.1", "AIWORLD_API_PORT": str(port)},
                ),
                free_port(),
                self.directory / f"api-{index}.log",
            )
            for index in range(self.apis)
        ]

    def _env(self) -> dict[str, str]:
        """The service's settings, pointing at this stack's Temporal and Redis (started first)."""
        return service_env(self.temporal, self.redis, TASK_QUEUE, API_KEY)

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.temporal.port}"

    @property
    def api_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{api.port}" for api in self.api_processes]

    @property
    def processes(self) -> list[ServerProcess]:
        return [self.temporal, self.redis, *self.worker_processes, *self.api_processes]

    def start(self) -> None:
        for process in self.processes:
            process.start()

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def dead(self) -> list[str]:
        return [
            f"{p.name} (exit {p.process.returncode}, log {p.log_path})"
            for p in self.processes
            if p.process and p.process.poll() is not None
        ]

    def use(self) -> dict[str, ProcessUse]:
        """Each process of the stack, and the load generator itself: it shares the same cores."""
        use = {process.name: process_use(process.process.pid) for process in self.processes if process.process}
        return use | {"load-generator": process_use(os.getpid(), descendants=False)}  # the stack is its children


@dataclass
class SentEvent:
    npc_id: str
    step: str
    sent_at: float  # wall clock, comparable with the workflow's decided_at on this machine
    status: int | str = "pending"  # the API's last answer, "connection" when it gave none
    accepted_after: float | None = None
    processed_at: float | None = None
    action_ids: list[str] = field(default_factory=list)


@dataclass
class Talk:
    step: str
    status: int | str
    seconds: float
    npc_id: str = ""
    turn_id: str = ""
    sent_at: float = 0.0  # wall clock, comparable with the history's event times on this machine


@dataclass
class Ledger:
    events: dict[str, SentEvent] = field(default_factory=dict)
    leased_at: dict[str, float] = field(default_factory=dict)
    results_reported: Counter = field(default_factory=Counter)
    talks: list[Talk] = field(default_factory=list)
    # npc -> its highest decision sequence seen (decisions it made since it started)
    decisions: dict[str, int] = field(default_factory=dict)
    query_failures: int = 0
    bridge_errors: int = 0  # polls of GET /ai/actions that got no answer


class Driver:
    """The game and the bridge: registers NPCs, sends events and talk, leases actions."""

    def __init__(self, stack: PipelineStack, npcs: int, seed: int = 10, timeout: float = REQUEST_TIMEOUT) -> None:
        self.stack = stack
        self.npc_ids = [f"bench_{index}" for index in range(npcs)]
        self.ledger = Ledger()
        self._history_before: dict[str, tuple[Counter, int]] = {}
        self._random = random.Random(seed)
        self._timeout = timeout
        self._sessions: list[aiohttp.ClientSession] = []  # one per API process, opened in the loop
        self._next_api = 0
        self._next_player = 150_000
        self._recent_players: list[int] = []
        self._temporal: Client | None = None
        self._reporting = asyncio.Semaphore(16)

    async def aclose(self) -> None:
        for session in self._sessions:
            await session.close()

    def _api(self, first: bool = False) -> aiohttp.ClientSession:
        """Round-robin over the API processes, as a load balancer would (`first`: always the first).
        aiohttp, not httpx: the generator shares the cores with the stack it measures, and httpx
        spent 0.81 ms of CPU per request against aiohttp's 0.12 (6,000 requests, 50 at once)."""
        if not self._sessions:
            self._sessions = [
                aiohttp.ClientSession(
                    base_url=url,
                    headers={"X-API-Key": API_KEY},
                    timeout=aiohttp.ClientTimeout(total=self._timeout),
                    connector=aiohttp.TCPConnector(limit=0),  # EVENTS_IN_FLIGHT bounds the requests
                )
                for url in self.stack.api_urls
            ]
        if first:
            return self._sessions[0]
        self._next_api = (self._next_api + 1) % len(self._sessions)
        return self._sessions[self._next_api]

    async def call(self, method: str, path: str, *, first: bool = False, **kwargs: Any) -> tuple[int, Any]:
        """One request: its status and its JSON body (None when it has none)."""
        status, body = await self._send(method, path, first, **kwargs)
        try:
            return status, json.loads(body) if body else None
        except ValueError:
            return status, None

    async def _send(self, method: str, path: str, first: bool = False, **kwargs: Any) -> tuple[int, bytes]:
        async with self._api(first).request(method, path, **kwargs) as response:
            return response.status, await response.read()

    async def _request(self, method: str, path: str, **kwargs: Any) -> int | str:
        """One attempt; its answer is counted as it is (a 503 is a figure, not something to hide
        behind a retry). "connection" when the API gave no answer."""
        try:
            status, _ = await self._send(method, path, **kwargs)
        except (aiohttp.ClientError, TimeoutError):
            return "connection"
        return status

    async def temporal(self) -> Client:
        if self._temporal is None:
            self._temporal = await Client.connect(self.stack.temporal_address, data_converter=pydantic_data_converter)
        return self._temporal

    # --- NPCs -------------------------------------------------------------------------------

    def _registration(self, index: int) -> dict[str, Any]:
        return {
            "npc_id": self.npc_ids[index],
            "name": f"Bench {index}",
            "sprite": 86,
            "map": MAPS[index % len(MAPS)],
            "x": 100 + index % 50,
            "y": 100 + (index // 50) % 50,
            "importance": 3,
        }

    async def register_all(self) -> dict[str, Any]:
        statuses: Counter = Counter()
        pending: asyncio.Queue[int] = asyncio.Queue()
        for index in range(len(self.npc_ids)):
            pending.put_nowait(index)

        async def registrar() -> None:
            while not pending.empty():
                index = pending.get_nowait()
                statuses[await self._request("POST", "/ai/npc/register", json=self._registration(index))] += 1

        began = time.monotonic()
        await asyncio.gather(*(registrar() for _ in range(16)))
        seconds = time.monotonic() - began
        if statuses[201] + statuses[200] != len(self.npc_ids):
            raise RuntimeError(f"registration answers: {dict(statuses)}")
        return {
            "npcs": len(self.npc_ids),
            "seconds": round(seconds, 1),
            "per_second": round(len(self.npc_ids) / seconds, 1),
        }

    async def wait_until_npcs_answer(self, timeout: float = 120) -> None:
        """The workers poll: the first registered NPC answers its state through the API."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if dead := self.stack.dead():
                raise RuntimeError(f"exited: {dead}")
            try:
                if (await self.call("GET", f"/ai/npc/{self.npc_ids[0]}", first=True))[0] == 200:
                    return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.5)
        raise TimeoutError(f"no worker answered within {timeout} s")

    # --- events and talk --------------------------------------------------------------------

    def _player(self, new: bool) -> dict[str, Any]:
        if new or not self._recent_players:
            self._next_player += 1
            self._recent_players.append(self._next_player)
            del self._recent_players[:-500]
            char_id = self._next_player
        else:
            char_id = self._random.choice(self._recent_players)
        return {"char_id": char_id, "name": f"Player{char_id}", "level": 30}

    def _event(self, event_id: str) -> dict[str, Any]:
        kind = self._random.choices([k for k, _ in EVENT_MIX], weights=[w for _, w in EVENT_MIX])[0]
        if kind == "arrival":
            return {"event_id": event_id, "kind": "player_nearby", "player": self._player(new=True)}
        if kind == "attack":
            return {"event_id": event_id, "kind": "player_attacked", "player": self._player(new=False)}
        if kind == "gift":
            return {
                "event_id": event_id,
                "kind": "item_received",
                "player": self._player(new=False),
                "item_id": 501,
                "amount": 1,
            }
        return {
            "event_id": event_id,
            "kind": "world_event",
            "text": "Merchants report a caravan on the road",
            "importance": 5,
        }

    async def _send_event(self, event_id: str, npc_id: str, step: str) -> None:
        sent = SentEvent(npc_id=npc_id, step=step, sent_at=time.time())
        self.ledger.events[event_id] = sent
        began = time.monotonic()
        sent.status = await self._request(
            "POST", "/ai/npc/event", json={"npc_id": npc_id, "event": self._event(event_id)}
        )
        if sent.status == 202:
            sent.accepted_after = time.monotonic() - began

    async def _talk(self, turn_id: str, step: str) -> None:
        npc_id = self._random.choice(self.npc_ids)
        turn = {"turn_id": turn_id, "player": self._player(new=False), "text": "Hello, any rumours today?"}
        sent_at, began = time.time(), time.monotonic()
        try:
            status: int | str = (
                await self._send("POST", "/ai/player/interaction", json={"npc_id": npc_id, "turn": turn})
            )[0]
        except TimeoutError:
            status = "no answer"
        except aiohttp.ClientError:
            status = "connection"
        seconds = time.monotonic() - began
        self.ledger.talks.append(Talk(step, status, seconds, npc_id=npc_id, turn_id=turn_id, sent_at=sent_at))

    async def offer(self, step: str, rate: float, seconds: float, talk_rate: float) -> dict[str, float]:
        """Events at `rate` and talk at `talk_rate` for `seconds`, each request on its own schedule."""
        in_flight: set[asyncio.Task] = set()

        async def paced(count: int, per_second: float, make: Any) -> float:
            began = time.monotonic()
            for index in range(count):
                delay = began + index / per_second - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                while len(in_flight) >= EVENTS_IN_FLIGHT:
                    await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                task = asyncio.create_task(make(index))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            return time.monotonic() - began

        event_count = round(rate * seconds)
        talk_count = round(talk_rate * seconds)
        offered_seconds, _ = await asyncio.gather(
            paced(
                event_count, rate, lambda i: self._send_event(f"{step}-e{i}", self._random.choice(self.npc_ids), step)
            ),
            paced(talk_count, talk_rate, lambda i: self._talk(f"{step}-t{i}", step))
            if talk_count
            else asyncio.sleep(0, 0.0),
        )
        await asyncio.gather(*in_flight)
        return {"events": event_count, "offered_seconds": offered_seconds}

    # --- the bridge: actions ----------------------------------------------------------------

    async def play_the_bridge(self, stop: asyncio.Event) -> None:
        """Lease every action as soon as it is leasable, report each result (as the bridge does)."""
        reports: set[asyncio.Task] = set()
        while not stop.is_set():
            try:
                status, body = await self.call(
                    "GET", "/ai/actions", first=True, params={"limit": 500, "lease_seconds": 600}
                )
            except (aiohttp.ClientError, TimeoutError):
                self.ledger.bridge_errors += 1
                await asyncio.sleep(0.2)
                continue
            now = time.time()
            actions = body["actions"] if status == 200 else []
            for action in actions:
                self.ledger.leased_at.setdefault(action["action_id"], now)
                task = asyncio.create_task(self._report(action["action_id"]))
                reports.add(task)
                task.add_done_callback(reports.discard)
            if not actions:
                await asyncio.sleep(0.05)
        await asyncio.gather(*reports)

    async def _report(self, action_id: str) -> None:
        async with self._reporting:
            status = await self._request(
                "POST", f"/ai/actions/{action_id}/result", json={"outcome": "done", "detail": "bench"}
            )
        self.ledger.results_reported[status] += 1

    # --- what the NPCs decided --------------------------------------------------------------

    async def read_decisions(self, npc_ids: list[str], deadline: float | None = None) -> None:
        """Query the NPCs' recent decisions; match events to the decision that handled them.
        Past `deadline` (monotonic) no further query starts: a busy worker answers slowly."""
        client = await self.temporal()
        gate = asyncio.Semaphore(QUERY_CONCURRENCY)

        async def read(npc_id: str) -> None:
            async with gate:
                if deadline is not None and time.monotonic() > deadline:
                    return
                try:
                    records = await client.get_workflow_handle(npc_workflow_id(npc_id)).query(
                        "recent_decisions", result_type=list[dict], rpc_timeout=timedelta(seconds=30)
                    )
                except Exception:  # noqa: BLE001 - a query that fails is counted and retried next round
                    self.ledger.query_failures += 1
                    return
            self.ledger.decisions[npc_id] = max(
                [self.ledger.decisions.get(npc_id, 0), *(r["sequence"] for r in records)]
            )
            for record in records:
                decided_at = datetime.fromisoformat(record["decided_at"]).timestamp()
                for event_id in record["event_ids"]:
                    sent = self.ledger.events.get(event_id)
                    if sent is not None and sent.processed_at is None:
                        sent.processed_at = decided_at
                        sent.action_ids = list(record["queued_action_ids"])

        await asyncio.gather(*(read(npc_id) for npc_id in npc_ids))

    def unmatched(self, step: str) -> list[SentEvent]:
        return [e for e in self.ledger.events.values() if e.step == step and e.status == 202 and e.processed_at is None]

    def unleased(self, step: str) -> list[SentEvent]:
        """Processed events whose decision queued actions the bridge stand-in has not leased yet."""
        return [
            e
            for e in self.ledger.events.values()
            if e.step == step and e.action_ids and not any(a in self.ledger.leased_at for a in e.action_ids)
        ]

    async def drain(self, step: str, seconds: float) -> float:
        """Until every accepted event of the step is found in a decision and its actions were
        leased (the stand-in polls on its own), or `seconds` pass."""
        began = time.monotonic()
        while (unmatched := self.unmatched(step)) or self.unleased(step):
            if time.monotonic() - began > seconds:
                break
            if unmatched:
                await self.read_decisions(sorted({event.npc_id for event in unmatched}), deadline=began + seconds)
            await asyncio.sleep(STEP_DRAIN_POLL)
        return time.monotonic() - began

    def history_sample(self, sample: int) -> list[str]:
        return self.npc_ids[:: max(1, len(self.npc_ids) // sample)][:sample]

    async def note_history_before(self, sample: int) -> None:
        """What the sampled NPCs' histories hold before the steps (each run's start, the first
        decisions), so that `history_per_decision` is the cost of the decisions the steps caused."""
        await self.read_decisions(self.history_sample(sample))
        for npc_id in self.history_sample(sample):
            self._history_before[npc_id] = (await self._history_of(npc_id), self.ledger.decisions.get(npc_id, 0))

    async def history_per_decision(self, sample: int) -> dict[str, Any]:
        """History events (every run, continue-as-new included) per decision on a sample of NPCs,
        since `note_history_before` when it was called, and what they are: signals, workflow
        tasks, local activity markers, timers, upserts."""
        chosen = self.history_sample(sample)
        await self.read_decisions(chosen)
        lengths, decisions = [], []
        kinds: Counter = Counter()
        for npc_id in chosen:
            before, decided_before = self._history_before.get(npc_id, (Counter(), 0))
            added = await self._history_of(npc_id) - before
            kinds.update(added)
            lengths.append(added.total())
            decisions.append(self.ledger.decisions.get(npc_id, 0) - decided_before)
        made = max(1, sum(decisions))
        return {
            "npcs_sampled": len(chosen),
            "history_events": sum(lengths),
            "decisions": sum(decisions),
            "history_events_per_decision": round(sum(lengths) / made, 1),
            "history_events_per_npc_p50": sorted(lengths)[len(lengths) // 2],
            "per_decision_by_type": {kind: round(count / made, 2) for kind, count in kinds.most_common()},
        }

    async def _history_of(self, npc_id: str) -> Counter:
        """An NPC's history events by type, over every run: back along the chain of runs, from the
        latest to the first (each run's first event names the run it continued)."""
        client = await self.temporal()
        kinds: Counter = Counter()
        run_id: str | None = None
        while True:
            history = await client.get_workflow_handle(npc_workflow_id(npc_id), run_id=run_id).fetch_history()
            kinds.update(EventType.Name(event.event_type).removeprefix("EVENT_TYPE_") for event in history.events)
            run_id = history.events[0].workflow_execution_started_event_attributes.continued_execution_run_id or None
            if run_id is None:
                return kinds

    async def talk_waits(self, talks: list[Talk]) -> dict[str, Any]:
        """Where each answered line's time went, from its NPC's history: the workflow task that
        accepted the `talk` update was scheduled (the API's calls, and the NPC's own task in
        flight, if any, before it), started (waiting at the server for a worker's poll) and
        completed (the worker: the activation and the reply's local activity); then the answer
        reached the player. Lines whose NPC has since continued as new are left out."""
        client = await self.temporal()
        parts: dict[str, list[float]] = {"until_scheduled": [], "scheduled_to_started": [], "in_the_worker": []}
        for talk in talks:
            if talk.status != 200:
                continue
            events = [
                event async for event in client.get_workflow_handle(npc_workflow_id(talk.npc_id)).fetch_history_events()
            ]
            by_id = {event.event_id: event for event in events}
            accepted = next(
                (
                    event
                    for event in events
                    if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
                    and event.workflow_execution_update_accepted_event_attributes.accepted_request.meta.update_id
                    == talk.turn_id
                ),
                None,
            )
            if accepted is None:
                continue
            completed = max(
                (
                    event
                    for event in events
                    if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
                    and event.event_id < accepted.event_id
                ),
                key=lambda event: event.event_id,
            )
            task = completed.workflow_task_completed_event_attributes
            scheduled, started = by_id[task.scheduled_event_id], by_id[task.started_event_id]

            def at(event: Any) -> float:
                return event.event_time.ToDatetime().replace(tzinfo=UTC).timestamp()

            parts["until_scheduled"].append(at(scheduled) - talk.sent_at)
            parts["scheduled_to_started"].append(at(started) - at(scheduled))
            parts["in_the_worker"].append(at(completed) - at(started))
        return {name: latency_summary(values) for name, values in parts.items()}

    # --- a step: offer, drain, measure ------------------------------------------------------

    async def step(
        self, name: str, rate: float, seconds: float, talk_rate: float, drain_seconds: float
    ) -> dict[str, Any]:
        load_before = machine_load()
        use_before = self.stack.use()
        decisions_before = sum(self.ledger.decisions.values())
        window_start = time.time()
        offered = await self.offer(name, rate, seconds, talk_rate)
        window_end = window_start + offered["offered_seconds"]
        drain_seconds_taken = await self.drain(name, drain_seconds)
        use_after = self.stack.use()
        load_after = machine_load()
        await self.read_decisions(self.npc_ids)  # every NPC: the decisions made meanwhile, routine ones too
        talks = [t for t in self.ledger.talks if t.step == name]
        talk_waits = await self.talk_waits(talks)
        decisions = sum(self.ledger.decisions.values()) - decisions_before

        events = [e for e in self.ledger.events.values() if e.step == name]
        accepted = [e for e in events if e.status == 202]
        processed = [e for e in accepted if e.processed_at is not None]
        in_window = [e for e in processed if e.processed_at is not None and e.processed_at <= window_end]
        with_action = [e for e in processed if e.action_ids]
        leased = [
            min(self.ledger.leased_at[a] for a in e.action_ids if a in self.ledger.leased_at) - e.sent_at
            for e in with_action
            if any(a in self.ledger.leased_at for a in e.action_ids)
        ]
        offered_rate = len(events) / offered["offered_seconds"]
        processed_rate = len(in_window) / offered["offered_seconds"]
        event_decisions = {(e.npc_id, tuple(e.action_ids), e.processed_at) for e in processed}
        return {
            "offered_per_second_target": rate,
            "offered_per_second": round(offered_rate, 1),
            "window_seconds": round(offered["offered_seconds"], 1),
            "events_sent": len(events),
            "event_answers": dict(Counter(str(e.status) for e in events)),
            "event_accept": latency_summary([e.accepted_after for e in accepted if e.accepted_after is not None]),
            "processed_in_window_per_second": round(processed_rate, 1),
            "processed_total": len(processed),
            "unprocessed_after_drain": len(accepted) - len(processed),
            "drain_seconds": round(drain_seconds_taken, 1),
            "sustained": processed_rate >= 0.9 * offered_rate and len(processed) == len(accepted),
            "event_to_decision": latency_summary(
                [e.processed_at - e.sent_at for e in processed if e.processed_at is not None]
            ),
            "event_to_action_leasable": latency_summary(leased),
            "events_whose_decision_queued_no_action": len(processed) - len(with_action),
            "actions_not_leased": len(with_action) - len(leased),
            "decisions": decisions,
            "decisions_on_these_events": len(event_decisions),
            "talk": {
                "sent": len(talks),
                "answered": sum(1 for t in talks if t.status == 200),
                "answers": dict(Counter(str(t.status) for t in talks)),
                "answered_latency": latency_summary([t.seconds for t in talks if t.status == 200]),
                "all_latency": latency_summary([t.seconds for t in talks]),
                "waits": talk_waits,
            },
            "cpu_ms_per_decision": {
                name: round((use_after[name].cpu_seconds - use_before[name].cpu_seconds) * 1000 / max(1, decisions), 1)
                for name in use_after
            },
            "cpu_percent_of_one_core": {
                name: round(
                    (use_after[name].cpu_seconds - use_before[name].cpu_seconds)
                    * 100
                    / (offered["offered_seconds"] + drain_seconds_taken)
                )
                for name in use_after
            },
            "rss_mib": {name: round(use.rss_mib) for name, use in use_after.items()},
            "load_before": describe_load(load_before),
            "load_after": describe_load(load_after),
            "query_failures": self.ledger.query_failures,
            "dead_processes": self.stack.dead(),
        }
