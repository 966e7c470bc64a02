"""Full garbage collections on a schedule: in this process (its collector settings restored after
each test), and in a real `aiworld worker` process."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiworld.config import WorkerSettings
from aiworld.ops.collector import NEVER, collect_fully_every, freeze_and_defer_full_collections
from aiworld.ops.worker import run_worker
from tests.conftest import quiet_worker_settings, worker_process_env
from tests.processes import ServerProcess


@pytest.fixture
def own_collector() -> Iterator[None]:
    """The suite's process gets its collector back as it was."""
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


class Node:
    def __init__(self) -> None:
        self.partner: Node | None = None


def cycle_in_the_oldest_generation() -> weakref.ref:
    """A reference cycle that survived a full collection (so it sits in the oldest generation),
    then became garbage: only a full collection can free it."""
    first, second = Node(), Node()
    first.partner, second.partner = second, first
    gc.collect()
    return weakref.ref(first)


async def test_young_collections_go_on_and_the_oldest_generation_waits_for_the_schedule(own_collector):
    freeze_and_defer_full_collections()
    assert gc.get_freeze_count() > 0 and gc.get_threshold()[2] == NEVER
    gone = cycle_in_the_oldest_generation()
    gc.collect(1)  # young collections don't reach it
    assert gone() is not None
    collector = asyncio.create_task(collect_fully_every(0.05))
    try:
        async with asyncio.timeout(30):
            while gone() is not None:
                await asyncio.sleep(0.05)
    finally:
        collector.cancel()


async def test_a_worker_process_collects_fully_on_its_schedule(dev_env, keys, task_queue, tmp_path: Path):
    env = worker_process_env(
        dev_env,
        keys,
        task_queue,
        AIWORLD_WORLD__SCHEDULES_ENABLED="false",
        AIWORLD_COHERENCE__SCHEDULE_ENABLED="false",
        AIWORLD_LOG_LEVEL="INFO",
        AIWORLD_WORKER__FULL_GC_INTERVAL_SECONDS="0.5",
    )
    log = tmp_path / "worker.log"
    worker = ServerProcess("worker", lambda _: ([sys.executable, "-m", "aiworld.cli", "worker"], env), 0, log)
    worker.start()
    try:
        async with asyncio.timeout(90):
            while log.read_text().count("full garbage collection:") < 2:
                assert worker.process is not None and worker.process.poll() is None, log.read_text()
                await asyncio.sleep(0.2)
        assert "objects built at start frozen" in log.read_text()
    finally:
        worker.stop()


async def test_with_no_interval_the_worker_leaves_python_its_own_collections(dev_env, keys, task_queue, caplog):
    """0: nothing frozen, the automatic full collections as Python has them (in this process, so
    it runs the worker itself rather than a child process)."""
    settings = quiet_worker_settings(dev_env, keys, task_queue, WorkerSettings(full_gc_interval_seconds=0))
    thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()
    caplog.set_level(logging.INFO)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop))
    async with asyncio.timeout(60):
        while "worker polling task queue" not in caplog.text:
            await asyncio.sleep(0.05)
    stop.set()
    await worker
    assert (gc.get_threshold(), gc.get_freeze_count()) == (thresholds, frozen)
    assert "garbage collection" not in caplog.text
