"""The token bucket spreads a burst from two worker processes over time, through the shared store."""

from __future__ import annotations

import asyncio
import sys

from tests.aiworld.llm.burst_client import REQUESTS_PER_MINUTE

PER_PROCESS = 15


async def test_a_burst_from_two_processes_is_spread_out(provider_server, keys, redis_client):
    first = len(provider_server.arrivals)
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.aiworld.llm.burst_client", provider_server.url, keys.prefix, str(PER_PROCESS)
        )
        for _ in range(2)
    ]
    assert [await process.wait() for process in processes] == [0, 0]
    stamps = provider_server.arrivals[first:]
    assert len(stamps) == 2 * PER_PROCESS
    rate = REQUESTS_PER_MINUTE / 60  # per second, shared by both processes
    # The bucket holds one second's worth: the rest must trickle in at the rate.
    assert stamps[-1] - stamps[0] >= (len(stamps) - rate) / rate * 0.8
    for start in stamps:
        in_window = [stamp for stamp in stamps if start <= stamp < start + 1.0]
        assert len(in_window) <= 2 * rate, "no one-second window sees much more than the rate"
