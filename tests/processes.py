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
from dataclasses import dataclass, field
from pathlib import Path

import redis

from aiworld.dev import redis_server_args, temporal_server_args


def free_port() -> int:
    """A port nothing listens on now. The caller starts its server on it at once; a server that
    then fails to bind is reported by `wait_until_listening`, never silently replaced."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_listening(port: int, process: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before listening on {port}")
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on {port} within {timeout} s")


@dataclass
class ServerProcess:
    """One child process started from a fixed command line, so it can be restarted as it was.
    `port` 0: the process serves no port (a worker)."""

    name: str
    args: list[str]
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        log.close()
        if self.port:  # a server; a process without a port (a worker) says it is ready otherwise
            wait_until_listening(self.port, self.process, self.name, timeout)

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
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    args = redis_server_args(directory, port) + (["--appendfsync", "always"] if sync_every_write else [])
    return ServerProcess("redis", args, port, directory / "redis.log")


def temporal_process(directory: Path) -> ServerProcess:
    """A Temporal dev server of the test's own, as `aiworld dev` runs it (SQLite file, WAL)."""
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    args = temporal_server_args(directory / "temporal.db", port, free_port())
    return ServerProcess("temporal", args, port, directory / "temporal.log")


def redis_answers(port: int) -> bool:
    client = redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False
    finally:
        client.close()
