"""The real stack as separate processes, and the clients the chaos suite drives it with.

Temporal's dev server (SQLite file), Redis (append-only file), `aiworld worker` and `aiworld api`
each run as a child process that the suite can kill -9, freeze and start again. The driver talks
to the API as the bridge does: it repeats a request until it gets a definite answer, so a fault
may delay an event but never lose it; the game stand-in leases actions and reports results the
way the dispatcher script and the bridge do.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.processes import ServerProcess, free_port, redis_process, service_env, temporal_process

API_KEY = "chaos-key"
TASK_QUEUE = "chaos"


@dataclass
class Stack:
    directory: Path
    temporal: ServerProcess = field(init=False)
    redis: ServerProcess = field(init=False)
    worker: ServerProcess = field(init=False)
    api: ServerProcess = field(init=False)

    def __post_init__(self) -> None:
        self.temporal = temporal_process(self.directory / "temporal")
        self.redis = redis_process(self.directory / "redis")
        aiworld = [sys.executable, "-m", "aiworld.cli"]
        self.worker = ServerProcess(
            "worker", lambda _: ([*aiworld, "worker"], self._env()), 0, self.directory / "worker.log"
        )
        self.api = ServerProcess(
            "api",
            lambda port: (
                [*aiworld, "api"],
                self._env() | {"AIWORLD_API_PORT": str(port), "AIWORLD_API_HOST": "127.0.0.1"},
            ),
            free_port(),
            self.directory / "api.log",
        )

    def _env(self) -> dict[str, str]:
        """The service's settings, pointing at this stack's Temporal and Redis (started first)."""
        return service_env(self.temporal, self.redis, TASK_QUEUE, API_KEY)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api.port}"

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.temporal.port}"

    def start(self) -> None:
        self.temporal.start()
        self.redis.start()
        self.worker.start()
        self.api.start()

    def stop(self) -> None:
        for process in (self.api, self.worker, self.redis, self.temporal):
            process.stop()


# Answers that settle a request; anything else (503, 504 on events, a dropped connection) is
# repeated with the same ids, as the bridge does.
SETTLED_EVENT = {202, 404, 422}
SETTLED_TALK = {200, 409, 422, 504}


@dataclass
class Ledger:
    """What the driver saw: every answer, every retry, and what the game stand-in executed."""

    answers: Counter = field(default_factory=Counter)
    accepted_events: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    talk_answers: dict[str, int] = field(default_factory=dict)
    leases: Counter = field(default_factory=Counter)
    executed: dict[str, dict[str, Any]] = field(default_factory=dict)
    leased_after_result: list[str] = field(default_factory=list)
    results_recorded: set[str] = field(default_factory=set)
    recoveries: dict[str, float] = field(default_factory=dict)


class Driver:
    def __init__(self, stack: Stack, ledger: Ledger) -> None:
        self._stack = stack
        self.ledger = ledger
        self._http = httpx.AsyncClient(base_url=stack.api_url, headers={"X-API-Key": API_KEY}, timeout=15)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _until_settled(self, method: str, path: str, settled: set[int], **kwargs: Any) -> httpx.Response:
        while True:
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.HTTPError:
                self.ledger.answers["connection"] += 1
            else:
                self.ledger.answers[response.status_code] += 1
                if response.status_code in settled:
                    return response
            await asyncio.sleep(0.5)

    async def register(self, registration: dict[str, Any]) -> None:
        response = await self._until_settled("POST", "/ai/npc/register", {200, 201, 422}, json=registration)
        assert response.status_code in (200, 201), response.text

    async def send_event(self, npc_id: str, event: dict[str, Any]) -> None:
        response = await self._until_settled(
            "POST", "/ai/npc/event", SETTLED_EVENT, json={"npc_id": npc_id, "event": event}
        )
        assert response.status_code == 202, f"{event['event_id']}: {response.status_code} {response.text}"
        self.ledger.accepted_events[npc_id].add(event["event_id"])

    async def talk(self, npc_id: str, turn: dict[str, Any]) -> int:
        response = await self._until_settled(
            "POST", "/ai/player/interaction", SETTLED_TALK, json={"npc_id": npc_id, "turn": turn}
        )
        self.ledger.talk_answers[f"{npc_id}-talk-{turn['turn_id']}"] = response.status_code
        return response.status_code

    async def play_the_game(self, stop: asyncio.Event) -> None:
        """Lease actions, execute each id once (the dispatcher's INSERT IGNORE), report results."""
        while not stop.is_set():
            try:
                response = await self._http.get("/ai/actions", params={"limit": 100, "lease_seconds": 20})
            except httpx.HTTPError:
                await asyncio.sleep(0.5)
                continue
            if response.status_code != 200:
                await asyncio.sleep(0.5)
                continue
            for action in response.json()["actions"]:
                action_id = action["action_id"]
                self.ledger.leases[action_id] += 1
                if action_id in self.ledger.results_recorded:
                    self.ledger.leased_after_result.append(action_id)
                self.ledger.executed.setdefault(action_id, action)
                await self._report(action_id)
            await asyncio.sleep(0.3)

    async def _report(self, action_id: str) -> None:
        response = await self._until_settled(
            "POST", f"/ai/actions/{action_id}/result", {200, 404, 409}, json={"outcome": "done", "detail": "chaos"}
        )
        assert response.status_code == 200, f"{action_id}: {response.status_code} {response.text}"
        self.ledger.results_recorded.add(action_id)
