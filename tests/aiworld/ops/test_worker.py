"""The worker process's own settings reach the Temporal worker it runs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from temporalio.worker import PollerBehaviorAutoscaling, PollerBehaviorSimpleMaximum, UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.npc_activities import NpcActivities
from aiworld.config import Settings, WorkerSettings
from aiworld.ops.worker import running_worker
from tests.conftest import quiet_worker_settings


async def test_cache_and_concurrency_settings_reach_the_worker(dev_env, keys, task_queue):
    settings = quiet_worker_settings(
        dev_env,
        keys,
        task_queue,
        WorkerSettings(
            max_cached_workflows=7,
            max_concurrent_workflow_tasks=9,
            max_concurrent_local_activities=11,
            max_workflow_task_polls=13,
            background_slots=3,
            background_max_wait_seconds=0.5,
        ),
    )
    async with running_worker(settings, dev_env.client) as worker:
        config = worker.config()
    [npcs] = [method.__self__ for method in config.get("activities", []) if method.__name__ == "decide_and_save"]
    assert isinstance(npcs, NpcActivities) and (npcs.gate.slots, npcs.gate.max_wait) == (3, 0.5)
    assert config.get("max_cached_workflows") == 7
    assert config.get("max_concurrent_workflow_tasks") == 9
    assert config.get("max_concurrent_local_activities") == 11
    polls = config.get("workflow_task_poller_behavior")
    assert isinstance(polls, PollerBehaviorAutoscaling) and polls.maximum == 13
    assert isinstance(config.get("workflow_runner"), UnsandboxedWorkflowRunner)
    # The sandbox on, and the SDK's own fixed polls (0).
    sandboxed = settings.model_copy(update={"worker": WorkerSettings(workflow_sandbox=True, max_workflow_task_polls=0)})
    async with running_worker(sandboxed, dev_env.client) as worker:
        assert isinstance(worker.config().get("workflow_runner"), SandboxedWorkflowRunner)
        assert worker.config().get("workflow_task_poller_behavior") == PollerBehaviorSimpleMaximum(maximum=5)


def test_worker_settings_come_from_the_environment_and_are_checked(monkeypatch):
    monkeypatch.setenv("AIWORLD_WORKER__MAX_CACHED_WORKFLOWS", "5000")
    assert Settings().worker.max_cached_workflows == 5000
    monkeypatch.setenv("AIWORLD_WORKER__MAX_CACHED_WORKFLOWS", "-1")
    with pytest.raises(ValidationError, match="worker.max_cached_workflows"):
        Settings()
