"""The worker process's own settings reach the Temporal worker it runs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from temporalio.worker import UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from aiworld.config import CoherenceSettings, Settings, WorkerSettings, WorldSettings
from aiworld.ops.worker import running_worker
from tests.conftest import REDIS_URL


async def test_cache_and_concurrency_settings_reach_the_worker(dev_env, keys, task_queue):
    settings = Settings(
        temporal_address=dev_env.client.service_client.config.target_host,
        redis_url=REDIS_URL,
        redis_key_prefix=keys.prefix,
        task_queue=task_queue,
        world=WorldSettings(schedules_enabled=False),
        coherence=CoherenceSettings(schedule_enabled=False),
        worker=WorkerSettings(
            max_cached_workflows=7, max_concurrent_workflow_tasks=9, max_concurrent_local_activities=11
        ),
    )
    async with running_worker(settings, dev_env.client) as worker:
        config = worker.config()
    assert config.get("max_cached_workflows") == 7
    assert config.get("max_concurrent_workflow_tasks") == 9
    assert config.get("max_concurrent_local_activities") == 11
    assert isinstance(config.get("workflow_runner"), UnsandboxedWorkflowRunner)
    sandboxed = settings.model_copy(update={"worker": WorkerSettings(workflow_sandbox=True)})
    async with running_worker(sandboxed, dev_env.client) as worker:
        assert isinstance(worker.config().get("workflow_runner"), SandboxedWorkflowRunner)


def test_worker_settings_come_from_the_environment_and_are_checked(monkeypatch):
    monkeypatch.setenv("AIWORLD_WORKER__MAX_CACHED_WORKFLOWS", "5000")
    assert Settings().worker.max_cached_workflows == 5000
    monkeypatch.setenv("AIWORLD_WORKER__MAX_CACHED_WORKFLOWS", "-1")
    with pytest.raises(ValidationError, match="worker.max_cached_workflows"):
        Settings()
