"""The world schedules: created from the settings, updated in place (an operator's pause stays), by
the worker at start and by `aiworld schedules apply`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta

from temporalio.client import Client, ScheduleActionStartWorkflow, ScheduleOverlapPolicy

from aiworld.config import Settings, WorldSettings
from aiworld.ops.worker import running_worker
from aiworld.world.cycle import SYSTEMS
from aiworld.world.schedules import (
    SUMMARIES,
    WORKFLOW_TYPES,
    apply_schedules,
    cycle_params,
    interval_of,
    schedule_id,
)
from tests.conftest import REDIS_URL


async def delete_schedules(client: Client, prefix: str = "") -> None:
    for system in SYSTEMS:
        await client.get_schedule_handle(schedule_id(system, prefix)).delete()


async def test_schedules_follow_the_settings_and_keep_an_operators_pause(dev_env, task_queue):
    client, prefix = dev_env.client, f"{task_queue}-"
    world = WorldSettings(economy_interval_seconds=120, jitter_seconds=10, catchup_window_seconds=600)
    try:
        assert set((await apply_schedules(client, world, task_queue, prefix)).values()) == {"created"}
        described = await client.get_schedule_handle(schedule_id("economy", prefix)).describe()
        schedule = described.schedule
        assert schedule.spec.intervals[0].every == timedelta(seconds=120)
        assert schedule.spec.jitter == timedelta(seconds=10)
        assert schedule.policy.overlap is ScheduleOverlapPolicy.SKIP
        assert schedule.policy.catchup_window == timedelta(seconds=600)
        action = schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.workflow == WORKFLOW_TYPES["economy"] and action.task_queue == task_queue
        summary = client.data_converter.payload_converter.from_payload(action.static_summary, str)  # type: ignore[arg-type]
        assert summary == SUMMARIES["economy"]

        await client.get_schedule_handle(schedule_id("economy", prefix)).pause(note="operator: quiet market")
        faster = world.model_copy(update={"demo_speed": True, "demo_interval_seconds": 5})
        assert set((await apply_schedules(client, faster, task_queue, prefix)).values()) == {"updated"}
        described = await client.get_schedule_handle(schedule_id("economy", prefix)).describe()
        assert described.schedule.spec.intervals[0].every == timedelta(seconds=5)
        assert described.schedule.state.paused and described.schedule.state.note == "operator: quiet market"
    finally:
        await delete_schedules(client, prefix)


async def test_the_worker_and_the_cli_apply_the_schedules(dev_env, task_queue, keys):
    address = dev_env.client.service_client.config.target_host
    settings = Settings(
        temporal_address=address, task_queue=task_queue, redis_url=REDIS_URL, redis_key_prefix=keys.prefix
    )
    try:
        async with running_worker(settings, dev_env.client):
            pass
        handle = dev_env.client.get_schedule_handle("world-quests")
        assert (await handle.describe()).schedule.action.task_queue == task_queue  # type: ignore[union-attr]
        env = {key: value for key, value in os.environ.items() if not key.startswith("AIWORLD_")}
        env.update(AIWORLD_TEMPORAL_ADDRESS=address, AIWORLD_TASK_QUEUE=task_queue, COLUMNS="200")
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "aiworld.cli", "schedules", "apply"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        for system in SYSTEMS:
            assert f"world-{system}: updated" in done.stdout
        assert "world-coherence: updated" in done.stdout  # the worker created it, the CLI updated it
    finally:
        await delete_schedules(dev_env.client)
        await dev_env.client.get_schedule_handle("world-coherence").delete()


def test_demo_speed_moves_every_system_and_the_calendar_faster():
    normal, demo = WorldSettings(), WorldSettings(demo_speed=True)
    assert interval_of(normal, "politics") == timedelta(seconds=1800)
    assert {interval_of(demo, system) for system in SYSTEMS} == {timedelta(seconds=30)}
    assert cycle_params(normal).game_day_seconds == 7200 and cycle_params(demo).game_day_seconds == 240
