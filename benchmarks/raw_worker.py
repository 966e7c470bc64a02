"""The raw baseline's workflow and its worker process (imports nothing but the SDK and uvloop):

python -m benchmarks.raw_worker ADDRESS TASK_QUEUE
"""

from __future__ import annotations

import asyncio
import sys
import time

import uvloop
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker


@workflow.defn(name="RawSignalCounter")
class RawSignalCounter:
    """An entity that waits until it has counted its share of `bump` signals: no activities,
    no timers, no search attributes."""

    def __init__(self) -> None:
        self._count = 0

    @workflow.signal
    def bump(self) -> None:
        self._count += 1

    @workflow.run
    async def run(self, expected: int) -> int:
        await workflow.wait_condition(lambda: self._count >= expected)
        return self._count


# The dev server listens a moment before its frontend says it is healthy: clients wait for it.
FRONTEND_READY_SECONDS = 60


async def connect_when_ready(address: str) -> Client:
    deadline = time.monotonic() + FRONTEND_READY_SECONDS
    while True:
        try:
            return await Client.connect(address)
        except RuntimeError:  # "Frontend is not healthy yet"
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def serve(address: str, task_queue: str) -> None:
    """The SDK's default worker settings, but for what `aiworld worker` runs differently by default
    (no workflow sandbox, uvloop): the baseline gets every advantage the pipeline has. Its polls
    for workflow tasks stay the SDK's fixed 5: scaled up to 50 as `aiworld worker` does, they cost
    the dev server about twice the CPU per signal of these trivial workflows (5.1 against 10.0 ms,
    231-241 against 137-145 signals/s, two runs each)."""
    client = await connect_when_ready(address)
    async with Worker(
        client, task_queue=task_queue, workflows=[RawSignalCounter], workflow_runner=UnsandboxedWorkflowRunner()
    ):
        await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(serve(sys.argv[1], sys.argv[2]))
