"""`aiworld dev` as an operator runs it: one process that brings up everything and takes it down."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis
import yaml
from temporalio.client import Client

from aiworld.world.definition import load_world

STOP_DEADLINE_SECONDS = 10


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def small_world(tmp_path: Path) -> Path:
    demo = load_world()
    path = tmp_path / "world.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "world": demo.world,
                "visitors": [visitor.model_dump(exclude_none=True) for visitor in demo.visitors[:1]],
                "npcs": [npc.model_dump(exclude_none=True) for npc in demo.npcs[:3]],
            }
        )
    )
    return path


@pytest.fixture
def dev_env_vars(tmp_path: Path, small_world: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIWORLD_") and key != "REDIS_URL"}
    # Only the virtualenv's scripts on PATH: no system redis-server, so `aiworld dev` must start the
    # one its own dependencies install; and a state-store URL where nothing answers.
    env["PATH"] = sysconfig.get_path("scripts")
    env.update(
        AIWORLD_DATA_DIR=str(tmp_path / "data"),
        AIWORLD_WORLD_FILE=str(small_world),
        AIWORLD_TEMPORAL_PORT=str(free_port()),
        AIWORLD_TEMPORAL_UI_PORT=str(free_port()),
        AIWORLD_API_PORT=str(free_port()),
        AIWORLD_EMBEDDED_REDIS_PORT=str(free_port()),
        AIWORLD_OBSERVABILITY__TEMPORAL_METRICS_PORT=str(free_port()),
        AIWORLD_OBSERVABILITY__WORKER_METRICS_PORT=str(free_port()),
        AIWORLD_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
    )
    return env


def start_dev(env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "aiworld.cli", "dev"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: every child it starts can be found after
    )


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


async def wait_until_up(env: dict[str, str], process: subprocess.Popen) -> Client:
    async with asyncio.timeout(120):
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                assert process.poll() is None, process.stdout.read()
                try:
                    if (await http.get(f"http://127.0.0.1:{env['AIWORLD_API_PORT']}/health")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.5)
        client = await Client.connect(f"127.0.0.1:{env['AIWORLD_TEMPORAL_PORT']}")
        while True:
            running = [
                wf.id
                async for wf in client.list_workflows("WorkflowType='NpcLifeWorkflow' AND ExecutionStatus='Running'")
            ]
            if len(running) == 3:
                return client
            await asyncio.sleep(0.5)


async def answer(url: str) -> httpx.Response:
    """The first answer of a server that may still be starting."""
    async with asyncio.timeout(120), httpx.AsyncClient(timeout=5) as http:
        while True:
            try:
                return await http.get(url)
            except httpx.HTTPError:
                await asyncio.sleep(0.5)


def stop(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=STOP_DEADLINE_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("aiworld dev did not stop within 10 s of SIGTERM")
    return output


async def test_dev_starts_everything_stops_everything_and_resumes(dev_env_vars, tmp_path):
    process = start_dev(dev_env_vars, tmp_path)
    try:
        client = await wait_until_up(dev_env_vars, process)
        first_run = (await client.get_workflow_handle("npc-lina_baker").describe()).run_id
        viewer = await answer(f"http://127.0.0.1:{dev_env_vars['AIWORLD_API_PORT']}/viewer")
        # NPCs count as running before the worker polls: its metrics answer once it is up.
        ours = await answer(f"http://127.0.0.1:{dev_env_vars['AIWORLD_OBSERVABILITY__WORKER_METRICS_PORT']}/metrics")
        sdk = await answer(f"http://127.0.0.1:{dev_env_vars['AIWORLD_OBSERVABILITY__TEMPORAL_METRICS_PORT']}/metrics")
        embedded = redis.Redis(port=int(dev_env_vars["AIWORLD_EMBEDDED_REDIS_PORT"]), decode_responses=True)
        try:
            persistence = {
                **await embedded.config_get("appendonly"),
                **await embedded.config_get("auto-aof-rewrite-percentage"),
            }
        finally:
            await embedded.aclose()
    finally:
        output = stop(process)
    assert process.returncode == 0, output
    assert persistence == {"appendonly": "yes", "auto-aof-rewrite-percentage": "400"}
    assert "http://127.0.0.1:" in output and "/docs" in output
    assert f"http://127.0.0.1:{dev_env_vars['AIWORLD_API_PORT']}/viewer" in output
    assert f"http://127.0.0.1:{dev_env_vars['AIWORLD_TEMPORAL_UI_PORT']}" in output
    assert viewer.status_code == 200 and "rAthena AI World" in viewer.text
    assert "aiworld_action_queue_depth" in ours.text and "temporal_" in sdk.text
    assert "3 started now" in output
    await asyncio.sleep(0.5)
    assert not group_alive(process.pid), "a child process of aiworld dev survived SIGTERM"
    assert (tmp_path / "data" / "temporal.db").exists()

    # Started again on the same data directory, the same NPC lives on in the same run.
    process = start_dev(dev_env_vars, tmp_path)
    try:
        client = await wait_until_up(dev_env_vars, process)
        assert (await client.get_workflow_handle("npc-lina_baker").describe()).run_id == first_run
    finally:
        output = stop(process)
    assert "0 started now" in output
    assert not group_alive(process.pid)


def test_a_taken_port_is_a_clear_error(dev_env_vars, tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        dev_env_vars["AIWORLD_API_PORT"] = str(holder.getsockname()[1])
        done = subprocess.run(
            [sys.executable, "-m", "aiworld.cli", "dev"],
            env=dev_env_vars,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert f"port {dev_env_vars['AIWORLD_API_PORT']}" in done.stderr and "AIWORLD_API_PORT" in done.stderr
