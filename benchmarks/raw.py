"""The raw-Temporal baseline: how many signals per second the same kind of dev server and a
Python worker process handle when the workflow does nothing but count them.

Each of N entity workflows (benchmarks/raw_worker.py) waits until it has received its share of
`bump` signals, then completes. The worker runs as its own process, as `aiworld worker` does.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from benchmarks.measure import describe_load, machine_load, process_use, until_done
from benchmarks.raw_worker import RawSignalCounter, connect_when_ready
from tests.processes import ServerProcess, temporal_process

TASK_QUEUE = "raw-baseline"
SENDERS = 64  # signals in flight at once: enough to keep the server busy, few enough to stay fair


async def measure(directory: Path, workflows: int, signals_per_workflow: int) -> dict:
    """Start a fresh dev server and worker, run the baseline, stop both; returns its figures."""
    temporal = temporal_process(directory / "temporal")
    worker = ServerProcess(
        "raw-worker",
        lambda _: (
            [sys.executable, "-m", "benchmarks.raw_worker", f"127.0.0.1:{temporal.port}", TASK_QUEUE],
            dict(os.environ),
        ),
        0,
        directory / "raw-worker.log",
    )
    try:
        temporal.start()
        worker.start()
        client = await connect_when_ready(f"127.0.0.1:{temporal.port}")
        load_before = machine_load()
        handles = []
        started = time.monotonic()
        for batch in range(0, workflows, SENDERS):
            handles += await asyncio.gather(
                *(
                    client.start_workflow(
                        RawSignalCounter.run, signals_per_workflow, id=f"raw-{index}", task_queue=TASK_QUEUE
                    )
                    for index in range(batch, min(batch + SENDERS, workflows))
                )
            )
        start_seconds = time.monotonic() - started
        cpu_before = process_use(temporal.pid).cpu_seconds
        total = workflows * signals_per_workflow
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in range(total):
            queue.put_nowait(index % workflows)

        async def sender() -> None:
            while not queue.empty():
                await handles[queue.get_nowait()].signal(RawSignalCounter.bump)

        began = time.monotonic()
        await asyncio.gather(*(sender() for _ in range(SENDERS)))
        sent_seconds = time.monotonic() - began
        counts = await until_done(asyncio.gather(*(handle.result() for handle in handles)), [temporal, worker])
        processed_seconds = time.monotonic() - began
        assert sum(counts) == total, f"{sum(counts)} signals counted of {total}"
        cpu_after = process_use(temporal.pid).cpu_seconds
        return {
            "workflows": workflows,
            "signals": total,
            "workflow_starts_per_second": round(workflows / start_seconds, 1),
            "signals_sent_per_second": round(total / sent_seconds, 1),
            "signals_processed_per_second": round(total / processed_seconds, 1),
            "temporal_cpu_ms_per_signal": round((cpu_after - cpu_before) * 1000 / total, 2),
            "load_before": describe_load(load_before),
            "load_after": describe_load(machine_load()),
        }
    finally:
        worker.stop()
        temporal.stop()
