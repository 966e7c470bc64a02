"""Shared fixtures: real Temporal (time-skipping and dev server), real Redis, real MariaDB.

Every fixture isolates what it touches (a key prefix, a database of its own, a task queue per test)
and removes it afterwards, so tests neither depend on their order nor leave anything behind.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomysql
import pytest
import pytest_asyncio
import redis.asyncio as redis
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from aiworld.config import CoherenceSettings, Settings, WorkerSettings, WorldSettings
from aiworld.memory import memori
from aiworld.models import DecisionRecord, NpcProfile, NpcStateView
from aiworld.npc import search_attributes
from aiworld.npc.control import ensure_npc_started
from aiworld.npc.offline_policy import OfflineDecisionMaker
from aiworld.ops import binaries
from aiworld.ops.worker import WORKFLOWS, build_worker
from aiworld.store.keys import Keys
from aiworld.temporal import ensure_search_attributes, npc_workflow_id
from aiworld.world.definition import load_world
from tests.processes import ServerProcess, search_process
from workflows.npc_state import NpcLifeInput

REDIS_URL = os.environ.get("AIWORLD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
MARIADB = {
    "host": os.environ.get("AIWORLD_TEST_DB_HOST", "127.0.0.1"),
    "port": int(os.environ.get("AIWORLD_TEST_DB_PORT", "3306")),
    "user": os.environ.get("AIWORLD_TEST_DB_USER", "root"),
    "password": os.environ.get("AIWORLD_TEST_DB_PASSWORD", ""),
}


@pytest_asyncio.fixture(loop_scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """The Java test server: timers jump ahead whenever every workflow is waiting. One per test
    (it starts in a fraction of a second): time skips only when every workflow on the server
    is idle, so a test must not share it with another test's workflows."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binaries.temporal_test_server()),
        data_converter=pydantic_data_converter,
    )
    try:
        await ensure_search_attributes(env.client)
        yield env
    finally:
        await env.shutdown()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real dev server (in memory) with our search attributes and workflow pause enabled."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(binaries.temporal_cli()),
        data_converter=pydantic_data_converter,
        search_attributes=list(search_attributes.ALL),
        dev_server_extra_args=["--dynamic-config-value", "frontend.WorkflowPauseEnabled=true"],
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def search_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A Redis-compatible server with FT.SEARCH (valkey + RediSearch from the dev extra)."""
    server = search_process(tmp_path_factory.mktemp("search-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def keys() -> Keys:
    return Keys(prefix=f"test:{uuid.uuid4().hex[:12]}:")


@pytest_asyncio.fixture(loop_scope="session")
async def redis_client(keys: Keys) -> AsyncIterator[redis.Redis]:
    """The real Redis on 127.0.0.1:6379; every key the test writes carries `keys.prefix`."""
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        yield client
    finally:
        async for key in client.scan_iter(match=f"{keys.prefix}*", count=500):
            await client.delete(key)
        await client.aclose()


@pytest_asyncio.fixture(loop_scope="session")
async def mariadb() -> AsyncIterator[dict]:
    """A database of the test's own on the real MariaDB, dropped at the end."""
    name = f"aiworld_test_{uuid.uuid4().hex[:10]}"
    await create_database(name)
    try:
        yield {**MARIADB, "db": name}
    finally:
        await drop_database(name)


async def _admin(statement: str) -> None:
    admin = await aiomysql.connect(**MARIADB, autocommit=True)
    try:
        async with admin.cursor() as cursor:
            await cursor.execute(statement)
    finally:
        admin.close()


async def create_database(name: str) -> None:
    await _admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")


async def drop_database(name: str) -> None:
    await _admin(f"DROP DATABASE IF EXISTS `{name}`")


# --- Memori (the memori extra) -------------------------------------------------------------------

MEMORI_MISSING = (
    "the Memori SDK (memori) is not installed in this environment: `make test` runs the memori tests in a virtualenv "
    "with the memori extra (pip install '.[memori]') and skips them only where that cannot be installed"
)
_LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost", "0.0.0.0", None}


@pytest.fixture(autouse=True)
def memori_offline(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[list]:
    """Tests marked `memori` run where the memori extra is installed, with the Hugging Face hub
    offline and every connection or name lookup beyond this machine refused and failing the test
    (Memori would swallow the error: its embedder returns zero vectors), so a model download or a
    call to Memori's hosted API cannot pass unseen."""
    attempts: list = []
    if request.node.get_closest_marker("memori") is None:
        yield attempts
        return
    if memori.installed_version() is None:
        pytest.skip(MEMORI_MISSING)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    real_connect, real_connect_ex, real_lookup = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def refused(what: object) -> OSError:
        attempts.append(what)
        return OSError(f"a memori test reached beyond this machine: {what}")

    def remote(sock: socket.socket, address: Any) -> bool:
        return sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOCAL_HOSTS

    def connect(sock: socket.socket, address: Any) -> None:
        if remote(sock, address):
            raise refused(address)
        return real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        if remote(sock, address):
            raise refused(address)
        return real_connect_ex(sock, address)

    def lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in _LOCAL_HOSTS:
            raise refused(name)
        return real_lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    yield attempts
    assert not attempts, f"a memori test reached beyond this machine: {attempts}"


@pytest_asyncio.fixture(loop_scope="session", params=["sqlite", "mariadb"])
async def memori_database(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[str]:
    """Where Memori keeps its tables: a SQLite file of the test's own, or a database of the
    test's own on the real MariaDB (dropped at the end), as a SQLAlchemy URL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'memori.sqlite'}"
        return
    name = f"aiworld_memori_{uuid.uuid4().hex[:10]}"
    await create_database(name)
    try:
        yield mariadb_url(name)
    finally:
        await drop_database(name)


def worker_process_env(dev_env: WorkflowEnvironment, keys: Keys, task_queue: str, **settings: str) -> dict[str, str]:
    """The environment of an `aiworld worker` process of a test: the suite's Temporal and Redis
    under the test's key prefix and task queue, the offline policy, plus `settings`."""
    return {
        **os.environ,
        "AIWORLD_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "AIWORLD_TASK_QUEUE": task_queue,
        "AIWORLD_REDIS_URL": REDIS_URL,
        "AIWORLD_REDIS_KEY_PREFIX": keys.prefix,
        "AIWORLD_LLM__DEFAULT_PROVIDER": "offline",
        "AIWORLD_LOG_LEVEL": "WARNING",
        **settings,
    }


def quiet_worker_settings(
    dev_env: WorkflowEnvironment, keys: Keys, task_queue: str, worker: WorkerSettings
) -> Settings:
    """Settings of a worker a test runs itself: the suite's Temporal and Redis, no
    world schedules nor coherence monitor (they would start workflows of their own)."""
    return Settings(
        temporal_address=dev_env.client.service_client.config.target_host,
        redis_url=REDIS_URL,
        redis_key_prefix=keys.prefix,
        task_queue=task_queue,
        world=WorldSettings(schedules_enabled=False),
        coherence=CoherenceSettings(schedule_enabled=False),
        worker=worker,
    )


def mariadb_url(database: str) -> str:
    """The test MariaDB as a SQLAlchemy URL (what `memory.memori_database_url` takes)."""
    password = f":{MARIADB['password']}" if MARIADB["password"] else ""
    return f"mysql+pymysql://{MARIADB['user']}{password}@{MARIADB['host']}:{MARIADB['port']}/{database}"


# --- NPC lives on a real worker ------------------------------------------------------------------


def demo_profile(npc_id: str = "lina_baker", **changes) -> NpcProfile:
    """A demo-world NPC, optionally changed (importance, id …) for one test."""
    base = next(npc for npc in load_world().npcs if npc.npc_id == npc_id)
    return NpcProfile.model_validate(base.model_dump() | changes)


@dataclass
class NpcLife:
    client: Client
    task_queue: str
    keys: Keys
    started: set[str] = field(default_factory=set)

    async def start(self, profile: NpcProfile, history_length_limit: int | None = None) -> WorkflowHandle:
        if history_length_limit is None:
            await ensure_npc_started(self.client, profile, self.task_queue)
        else:
            await self.client.start_workflow(
                "NpcLifeWorkflow",
                NpcLifeInput(profile=profile, history_length_limit=history_length_limit),
                id=npc_workflow_id(profile.npc_id),
                task_queue=self.task_queue,
            )
        self.started.add(npc_workflow_id(profile.npc_id))
        return self.client.get_workflow_handle(npc_workflow_id(profile.npc_id))

    async def state(self, handle: WorkflowHandle) -> NpcStateView:
        return await handle.query("state", result_type=NpcStateView)

    async def wait_for(
        self, handle: WorkflowHandle, predicate: Callable[[NpcStateView], bool], timeout: float = 60
    ) -> NpcStateView:
        """Poll the `state` query until the NPC reaches the expected situation."""
        return await _query_until(handle, "state", NpcStateView, predicate, timeout)

    async def wait_for_decisions(
        self, handle: WorkflowHandle, predicate: Callable[[list[DecisionRecord]], bool], timeout: float = 60
    ) -> list[DecisionRecord]:
        return await _query_until(handle, "recent_decisions", list[DecisionRecord], predicate, timeout)


def query_may_be_asked_again(error: RPCError) -> bool:
    """A query can time out while the worker is busy with a burst (the server's deadline, or the
    client's own "Timeout expired" which gRPC reports as CANCELLED), or find the workflow task just
    timed out on a loaded machine (the server retries it): those are asked again; anything else is
    a real failure."""
    if error.status is RPCStatusCode.DEADLINE_EXCEEDED:
        return True
    if error.status is RPCStatusCode.CANCELLED and "Timeout expired" in error.message:
        return True
    return error.status is RPCStatusCode.FAILED_PRECONDITION or "failed state" in error.message


async def _query_until(
    handle: WorkflowHandle, query: str, result_type: Any, predicate: Callable[[Any], bool], timeout: float
) -> Any:
    last_error: RPCError | None = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    answer = await handle.query(query, result_type=result_type)
                except RPCError as error:
                    if not query_may_be_asked_again(error):
                        raise
                    last_error = error
                else:
                    if predicate(answer):
                        return answer
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"{handle.id}: `{query}` never matched; last query error: {last_error}") from None


async def _running_life(
    client: Client, task_queue: str, redis_client, keys: Keys, *, visibility: bool, **worker_options
):
    # The offline policy: what the demo world runs on when no LLM is configured.
    router = OfflineDecisionMaker()
    life = NpcLife(client, task_queue, keys)
    async with build_worker(client, task_queue, redis_client, keys, router, **worker_options):
        yield life
    await end_lives(client, task_queue, life.started, visibility=visibility)


async def end_lives(client: Client, task_queue: str, started: set[str], *, visibility: bool) -> None:
    """Terminate the NPCs a test left running: the servers live for the whole session and NPC
    workflow ids are fixed, so a leftover would be found by the next test."""
    ids = set(started)
    if visibility:  # the dev server also finds NPCs started through the API or the CLI
        ids.update(
            [wf.id async for wf in client.list_workflows(f"TaskQueue='{task_queue}' AND ExecutionStatus='Running'")]
        )
    for workflow_id in ids:
        try:
            await client.get_workflow_handle(workflow_id).terminate("test finished")
        except RPCError as error:
            if error.status is not RPCStatusCode.NOT_FOUND:
                raise
    await replay_every_run(client, ids)


async def replay_every_run(client: Client, workflow_ids: set[str]) -> None:
    """Replay the histories this test just made, every run of each NPC: a change that makes the
    workflow non-deterministic fails the test that produced the history, not a player's NPC."""
    histories = []
    for workflow_id in sorted(workflow_ids):
        run_id: str | None = None
        while True:
            history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
            if history.events[0].workflow_execution_started_event_attributes.workflow_type.name != "NpcLifeWorkflow":
                break
            histories.append(history)
            run_id = history.events[0].workflow_execution_started_event_attributes.continued_execution_run_id
            if not run_id:
                break
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)

    async def each() -> AsyncIterator[WorkflowHistory]:
        for history in histories:
            yield history

    results = await replayer.replay_workflows(each(), raise_on_replay_failure=False)
    failures = {run_id: str(failure) for run_id, failure in results.replay_failures.items()}
    if failures:  # kept for the post-mortem: `temporal workflow show`-like JSON, replayable
        kept = Path(tempfile.mkdtemp(prefix="aiworld-unreplayable-"))
        for history in histories:
            if history.run_id in failures:
                (kept / f"{history.workflow_id}-{history.run_id}.json").write_text(history.to_json())
        failures["kept in"] = str(kept)
    assert not failures, f"fresh histories no longer replay: {failures}"


@pytest_asyncio.fixture(loop_scope="session")
async def life(time_skipping_env, task_queue, redis_client, keys):
    async for running in _running_life(time_skipping_env.client, task_queue, redis_client, keys, visibility=False):
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def dev_life(dev_env, task_queue, redis_client, keys):
    # The worker's own cache, as in production: with none, the SDK core evicts an NPC while its
    # local activities run ("local activities when using max_cached_workflows=0 are cancelled"),
    # its workflow tasks time out, and its history may no longer replay. Non-determinism shows
    # at the end of each test instead, when `end_lives` replays every run it made.
    async for running in _running_life(dev_env.client, task_queue, redis_client, keys, visibility=True):
        yield running
