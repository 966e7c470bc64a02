"""What the benchmark reads from the machine: load, CPU time and memory of each process (from
/proc), and percentiles of what it timed."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tests.processes import ServerProcess

T = TypeVar("T")

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def machine_load() -> dict[str, float | int]:
    one, five, fifteen = os.getloadavg()
    return {
        "loadavg_1m": round(one, 2),
        "loadavg_5m": round(five, 2),
        "loadavg_15m": round(fifteen, 2),
        "nproc": os.cpu_count() or 0,
    }


def describe_load(load: dict[str, float | int]) -> str:
    return f"loadavg {load['loadavg_1m']} {load['loadavg_5m']} {load['loadavg_15m']}, nproc {load['nproc']}"


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat; None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its closing one.
    return text[text.rindex(")") + 2 :].split()


def _process_tree(pid: int) -> list[int]:
    """The process and its descendants: a server may run its work in child processes."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(children.get(current, []))
    return tree


@dataclass(frozen=True)
class ProcessUse:
    cpu_seconds: float  # user + system, the process and its descendants
    rss_mib: float


def process_use(pid: int, descendants: bool = True) -> ProcessUse:
    """Zero for a process that is gone: it uses nothing any more."""
    cpu = rss_pages = 0.0
    for member in _process_tree(pid) if descendants else [pid]:
        if fields := _stat_fields(member):
            # Fields 14 (utime), 15 (stime) and 24 (rss) of proc(5), counted from 3 after the name.
            cpu += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            rss_pages += int(fields[21])
    return ProcessUse(cpu_seconds=cpu, rss_mib=rss_pages * PAGE_SIZE / 2**20)


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None when nothing was measured."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary(seconds: list[float]) -> dict[str, float | int | None]:
    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 1)

    return {
        "count": len(seconds),
        "p50_ms": ms(percentile(seconds, 0.50)),
        "p99_ms": ms(percentile(seconds, 0.99)),
        "max_ms": ms(max(seconds) if seconds else None),
    }


def describe_latency(summary: dict[str, float | int | None]) -> str:
    if not summary["count"]:
        return "none measured"

    def shown(value: float | int | None) -> str:
        assert value is not None
        return f"{value:.0f} ms" if value < 10_000 else f"{value / 1000:.1f} s"

    return f"p50 {shown(summary['p50_ms'])}, p99 {shown(summary['p99_ms'])}, max {shown(summary['max_ms'])} (n={summary['count']})"


async def until_done(awaitable: Awaitable[T], processes: list[ServerProcess], timeout: float = 1800) -> T:
    """Await, but give up with the reason when a process it depends on exits or time runs out,
    rather than wait forever on work nobody will do."""
    task = asyncio.ensure_future(awaitable)
    deadline = time.monotonic() + timeout
    while not task.done():
        if exited := [
            f"{p.name} (exit {p.process.returncode}, log {p.log_path})"
            for p in processes
            if p.process and p.process.poll() is not None
        ]:
            task.cancel()
            raise RuntimeError(f"exited: {exited}")
        if time.monotonic() > deadline:
            task.cancel()
            raise TimeoutError(f"not done within {timeout} s")
        await asyncio.wait([task], timeout=1)
    return task.result()
