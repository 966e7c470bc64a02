"""Real server processes a test can fault: kill -9, freeze (SIGSTOP), thaw, and start again.

Fault tests and the chaos suite run their own Redis (and, in the chaos suite, their own Temporal,
worker and API) so that killing one touches nothing else on the machine.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from aiworld.ops import binaries
from aiworld.ops.dev import redis_server_args, temporal_server_args


def free_port() -> int:
    """A port nothing listens on now. A server started on it may still lose it to another
    process first: `ServerProcess.start` then starts it again on another port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ExitedEarly(RuntimeError):
    pass


def wait_until_listening(port: int, process: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ExitedEarly(f"{what} exited with {process.returncode} before listening on {port}")
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on {port} within {timeout} s")


# How a server is launched on a given port: its command line and environment.
Launch = Callable[[int], tuple[list[str], dict[str, str]]]
FIRST_START_ATTEMPTS = 5


@dataclass
class ServerProcess:
    """One child process, started again exactly as it first ran (same port, same files).
    `port` 0: the process serves no port (a worker)."""

    name: str
    launch: Launch
    port: int
    log_path: Path
    process: subprocess.Popen | None = None
    _started_as: tuple[list[str], dict[str, str]] | None = None

    def start(self, timeout: float = 60.0) -> None:
        restart = self._started_as is not None
        for attempt in range(1 if restart or not self.port else FIRST_START_ATTEMPTS):
            args, env = self._started_as or self.launch(self.port)
            log = self.log_path.open("ab")
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            log.close()
            try:
                if self.port:  # a server; a process without a port (a worker) says it is ready otherwise
                    wait_until_listening(self.port, self.process, self.name, timeout)
            except ExitedEarly:
                if restart or attempt == FIRST_START_ATTEMPTS - 1:
                    raise
                self.port = free_port()  # the port was taken meanwhile: another one
                continue
            self._started_as = (args, env)
            return

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    def kill(self) -> None:
        """kill -9: no chance to flush or say goodbye."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def freeze(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.thaw()
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def redis_process(directory: Path, sync_every_write: bool = True) -> ServerProcess:
    """A Redis of the test's own, as `aiworld dev` runs one. With `sync_every_write` each write is
    synced to its append-only file, so that kill -9 loses no acknowledged write; without it
    (benchmarks), it syncs once a second as `aiworld dev` does."""
    directory.mkdir(parents=True, exist_ok=True)
    sync = ["--appendfsync", "always"] if sync_every_write else []

    def launch(port: int) -> tuple[list[str], dict[str, str]]:
        return redis_server_args(directory, port) + sync, dict(os.environ)

    return ServerProcess("redis", launch, free_port(), directory / "redis.log")


def temporal_process(directory: Path) -> ServerProcess:
    """A Temporal dev server of the test's own, as `aiworld dev` runs it (SQLite file, WAL)."""
    directory.mkdir(parents=True, exist_ok=True)

    def launch(port: int) -> tuple[list[str], dict[str, str]]:
        return temporal_server_args(directory / "temporal.db", port, free_port()), dict(os.environ)

    return ServerProcess("temporal", launch, free_port(), directory / "temporal.log")


def redis_answers(port: int) -> bool:
    client = redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False
    finally:
        client.close()


def service_env(temporal: ServerProcess, redis: ServerProcess, task_queue: str, api_key: str) -> dict[str, str]:
    """`aiworld worker` and `aiworld api` settings pointing at a Temporal and a Redis of our own
    (read when the service starts, after them: a first start may have moved their ports)."""
    return {
        **os.environ,
        "AIWORLD_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal.port}",
        "AIWORLD_REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
        "AIWORLD_TASK_QUEUE": task_queue,
        "AIWORLD_API_KEYS": api_key,
        "AIWORLD_JWT_SECRET": "a-secret-of-the-test-stack-long-enough-for-hs256",
        "AIWORLD_LOG_LEVEL": "WARNING",
        "AIWORLD_LLM__DEFAULT_PROVIDER": "offline",
        # These stacks load and kill the NPC pipeline and count its workflows; the world cycles'
        # and the coherence monitor's scheduled runs would add load and workflows of their own
        # (they have their tests, and the benchmark measures the cycles apart).
        "AIWORLD_WORLD__SCHEDULES_ENABLED": "false",
        "AIWORLD_COHERENCE__SCHEDULE_ENABLED": "false",
    }


def search_process(directory: Path) -> ServerProcess:
    """A Redis-compatible server with FT.SEARCH (valkey + RediSearch from the dev extra), in memory."""
    directory.mkdir(parents=True, exist_ok=True)
    server, module = binaries.search_server()

    def launch(port: int) -> tuple[list[str], dict[str, str]]:
        args = [str(server), "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--dir", str(directory)]
        return args + ["--loadmodule", str(module)], dict(os.environ)

    return ServerProcess("search-server", launch, free_port(), directory / "search-server.log")
