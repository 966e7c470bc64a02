"""`aiworld npc list`: the operator's table of living NPCs, from Temporal visibility."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from tests.conftest import demo_profile


async def test_npc_list_shows_living_npcs_by_map(dev_life, dev_env):
    await dev_life.start(demo_profile("marlo_sailor"))
    await dev_life.start(demo_profile("lina_baker"))
    address = dev_env.client.service_client.config.target_host
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIWORLD_")}
    env.update(AIWORLD_TEMPORAL_ADDRESS=address, COLUMNS="200")

    async def listed(*args: str) -> str:
        done = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aiworld.cli",
            "npc",
            "list",
            *args,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await done.communicate()
        assert done.returncode == 0, err.decode()
        return out.decode()

    async with asyncio.timeout(30):
        while "npc-marlo_sailor" not in (everyone := await listed()):
            await asyncio.sleep(0.3)
    assert "npc-lina_baker" in everyone and "izlude" in everyone and "merchants_guild" in everyone
    izlude = await listed("--map", "izlude")
    assert "npc-marlo_sailor" in izlude and "npc-lina_baker" not in izlude


def test_npc_list_refuses_a_malformed_filter(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "aiworld.cli", "npc", "list", "--map", "x' OR '1'='1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2 and "--map" in done.stderr
