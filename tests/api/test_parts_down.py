"""What the API answers when a part behind it is down: Temporal, the state store, the NPC's worker.
Always within a bound, always the part by name and a request id, never the part's own error text
(that goes to the log under the same id), never a 500, and no promise it cannot keep."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import pytest_asyncio
import redis.asyncio as redis
from temporalio.testing import WorkflowEnvironment

from aiworld.models import NpcStateView
from aiworld.npc.offline_policy import OfflineDecisionMaker
from aiworld.ops import binaries
from aiworld.ops.worker import build_worker
from api.app import create_app
from tests.api.conftest import API_KEYS, api_settings, open_api
from tests.conftest import end_lives, worker_process_env

ARIA = {"char_id": 150001, "name": "Aria", "level": 34, "job_class": 4, "map": "payon", "x": 100, "y": 101}
# Not in the world file, importance 5: it sleeps until spoken to, so nothing else touches the store.
STRANGER = {"npc_id": "quiet_stranger", "name": "Quiet Stranger", "sprite": 50, "map": "payon", "x": 100, "y": 100}
WAIT = 2.0


@contextmanager
def dead_port() -> Iterator[int]:
    """A port that refuses connections (bound, never listening), held for the test's duration."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


@contextmanager
def frozen_port() -> Iterator[int]:
    """A port that accepts connections and never answers, like a server stopped with SIGSTOP."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(16)
        yield held.getsockname()[1]


def assert_generic_503(answer, part: str, caplog, leaked: list[str]) -> str:
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
    rid = answer.headers["X-Request-ID"]
    detail = answer.json()["detail"]
    assert part in detail and f"request id {rid}" in detail
    for text in leaked:
        assert text not in detail
    return rid


def logged(caplog, rid: str) -> str:
    return "\n".join(record.getMessage() for record in caplog.records if rid in record.getMessage())


@pytest_asyncio.fixture(loop_scope="session")
async def workerless_api(dev_env, redis_client, keys, task_queue):
    """The API over a task queue that no worker polls (the worker is down)."""
    app = create_app(
        api_settings(keys, task_queue),
        client=dev_env.client,
        store=redis_client,
        reply_wait_seconds=WAIT,
        query_wait_seconds=WAIT,
    )
    async with app.router.lifespan_context(app), await open_api(app) as http:
        http.headers["X-API-Key"] = API_KEYS[0]
        yield http
    await end_lives(dev_env.client, task_queue, set(), visibility=True)


async def timed(request) -> tuple[object, float]:
    began = time.perf_counter()
    async with asyncio.timeout(WAIT + 20):  # the old API waited here without end
        answer = await request
    return answer, time.perf_counter() - began


async def test_talk_without_a_worker_is_503_within_the_bound_and_promises_nothing(workerless_api, caplog):
    assert (await workerless_api.post("/ai/npc/register", json=STRANGER)).status_code == 201
    turn = {"turn_id": "unheard-1", "player": ARIA, "text": "Anyone there?"}
    with caplog.at_level(logging.WARNING, logger="api.errors"):
        answer, took = await timed(
            workerless_api.post("/ai/player/interaction", json={"npc_id": "quiet_stranger", "turn": turn})
        )
    rid = assert_generic_503(answer, "the worker of NPC 'quiet_stranger'", caplog, leaked=[])
    assert "queued" not in answer.json()["detail"]  # never accepted: no reply is coming
    assert took < WAIT + 1.5, took
    assert "unheard-1" in logged(caplog, rid)


async def test_state_without_a_worker_is_503_within_the_bound(workerless_api):
    assert (await workerless_api.post("/ai/npc/register", json=STRANGER)).status_code == 201
    answer, took = await timed(workerless_api.get("/ai/npc/quiet_stranger"))
    assert answer.status_code == 503 and "no worker answered the query" in answer.json()["detail"]
    assert took < WAIT + 1.5, took


@pytest_asyncio.fixture(loop_scope="session")
async def storeless_api(dev_env, redis_client, keys, task_queue):
    """A worker whose state store refuses connections; the API's own store is fine."""
    with dead_port() as port:
        unreachable = redis.Redis.from_url(f"redis://127.0.0.1:{port}/0")
        app = create_app(
            api_settings(keys, task_queue), client=dev_env.client, store=redis_client, reply_wait_seconds=15
        )
        async with build_worker(dev_env.client, task_queue, unreachable, keys, OfflineDecisionMaker()):
            async with app.router.lifespan_context(app), await open_api(app) as http:
                http.headers["X-API-Key"] = API_KEYS[0]
                yield http
        await end_lives(dev_env.client, task_queue, set(), visibility=True)
        await unreachable.aclose()


async def test_talk_during_a_store_outage_is_answered_from_what_the_npc_carries(storeless_api, dev_env):
    """The NPC cannot read its memories nor write the turn: it still answers the player (offline
    policy, no memories) and keeps the turn's writes until its store is back."""
    assert (await storeless_api.post("/ai/npc/register", json=STRANGER)).status_code == 201
    turn = {"turn_id": "storeless-1", "player": ARIA, "text": "Hello?"}
    answer, _ = await timed(
        storeless_api.post("/ai/player/interaction", json={"npc_id": "quiet_stranger", "turn": turn})
    )
    assert answer.status_code == 200 and answer.json()["text"]
    state = await dev_env.client.get_workflow_handle("npc-quiet_stranger").query("state", result_type=NpcStateView)
    assert state.unsaved_writes == 1 and state.fallbacks == 1


async def test_readiness_names_the_part_down_and_keeps_its_words_in_the_log(
    dev_env, redis_client, keys, task_queue, caplog
):
    settings = api_settings(keys, task_queue)
    # A Temporal server of its own, stopped after the client connected: Temporal went down.
    gone = await WorkflowEnvironment.start_local(dev_server_existing_path=str(binaries.temporal_cli()))
    temporal_gone = gone.client
    gone_address = temporal_gone.service_client.config.target_host
    await gone.shutdown()
    with dead_port() as port, frozen_port() as frozen:
        refusing = redis.Redis.from_url(f"redis://127.0.0.1:{port}/0")
        hanging = redis.Redis.from_url(f"redis://127.0.0.1:{frozen}/0")
        cases = [
            (dev_env.client, refusing, "the state store", ["111", "onnect", str(port)]),
            (dev_env.client, hanging, "the state store", [str(frozen)]),
            (temporal_gone, redis_client, "Temporal", [gone_address.rpartition(":")[2], "onnect", "transport"]),
        ]
        for client, store, part, leaked in cases:
            app = create_app(settings, client=client, store=store)
            async with app.router.lifespan_context(app), await open_api(app) as http:
                with caplog.at_level(logging.WARNING, logger="api.errors"):
                    answer, took = await timed(http.get("/ready"))
            rid = assert_generic_503(answer, part, caplog, leaked)
            assert took < 2 * 2.0 + 1.5, (part, took)
            assert logged(caplog, rid), part
        await refusing.aclose()
        await hanging.aclose()


@asynccontextmanager
async def frozen_worker(dev_env, keys, task_queue) -> AsyncIterator[Callable[[], None]]:
    """`aiworld worker` as its own process; the yielded function stops it with SIGSTOP, so it holds
    the workflow tasks Temporal hands it and answers nothing, like a worker frozen or swamped."""
    env = worker_process_env(dev_env, keys, task_queue)
    worker = subprocess.Popen([sys.executable, "-m", "aiworld.cli", "worker"], env=env, stdout=subprocess.DEVNULL)
    try:
        yield lambda: worker.send_signal(signal.SIGSTOP)
    finally:
        worker.send_signal(signal.SIGCONT)
        worker.terminate()
        worker.wait(timeout=30)


async def test_state_of_an_npc_whose_worker_froze_is_503_within_the_bound(workerless_api, dev_env, keys, task_queue):
    async with frozen_worker(dev_env, keys, task_queue) as freeze:
        assert (await workerless_api.post("/ai/npc/register", json=STRANGER)).status_code == 201
        async with asyncio.timeout(60):  # the worker process came up and answers
            while (await workerless_api.get("/ai/npc/quiet_stranger")).status_code != 200:
                await asyncio.sleep(0.2)
        freeze()
        # An event gives the frozen worker a workflow task it will never finish; queries pile up behind it.
        event = {"event_id": "while-frozen", "kind": "player_nearby", "player": ARIA}
        assert (
            await workerless_api.post("/ai/npc/event", json={"npc_id": "quiet_stranger", "event": event})
        ).status_code == 202
        began = time.perf_counter()
        answers = await asyncio.gather(*(workerless_api.get("/ai/npc/quiet_stranger") for _ in range(4)))
        took = time.perf_counter() - began
    assert [answer.status_code for answer in answers] == [503] * 4
    assert all("no worker answered the query" in answer.json()["detail"] for answer in answers)
    assert took < WAIT + 1.5, took
