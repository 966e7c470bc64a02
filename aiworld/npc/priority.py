"""Who goes first inside a worker: a player's line never waits behind background work.

A worker process runs the local activities of all its NPCs on one event loop. Under load, a
player's reply shared that loop with every decision in flight (up to the worker's local activity
slots), and each of its round trips to the store waited behind theirs: on the 1,000-NPC benchmark
a reply's workflow task took p90 348 ms from start to completion, almost all of it waiting.

The gate lets at most `slots` background turns (event decisions, then routine writes) run at once
in the process; the others wait, the event decisions first, each kind in order of arrival. A
player's line passes without waiting. A background turn waits at most `max_wait` seconds: then it
runs anyway, over the limit, so the gate can delay a decision a little but never time it out.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import IntEnum


class Turn(IntEnum):
    """What a local activity is doing, most urgent first."""

    TALK = 0  # a player waits for the answer: never gated
    EVENT = 1  # something happened in the game: the NPC reacts
    ROUTINE = 2  # the NPC's own cadence: nobody waits for it


@dataclass(order=True)
class _Waiter:
    turn: Turn
    arrival: int
    admitted: asyncio.Future[None] = field(compare=False)


class PriorityGate:
    """At most `slots` background turns at once (0: no limit), the rest waiting by priority."""

    def __init__(self, slots: int, max_wait: float) -> None:
        self.slots = slots
        self.max_wait = max_wait
        self.running = 0  # background turns running now, overruns included
        self.overruns = 0  # turns that waited `max_wait` and ran anyway
        self._waiting: list[_Waiter] = []
        self._arrivals = itertools.count()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @asynccontextmanager
    async def turn(self, turn: Turn) -> AsyncIterator[None]:
        if turn is Turn.TALK or not self.slots:
            yield
            return
        await self._enter(turn)
        try:
            yield
        finally:
            self.running -= 1
            self._admit()

    async def _enter(self, turn: Turn) -> None:
        if self.running < self.slots and not self._waiting:
            self.running += 1
            return
        waiter = _Waiter(turn, next(self._arrivals), asyncio.get_running_loop().create_future())
        heapq.heappush(self._waiting, waiter)
        try:
            await asyncio.wait([waiter.admitted], timeout=self.max_wait)
        except asyncio.CancelledError:
            if waiter.admitted.done():  # a slot was handed over: hand it on
                self.running -= 1
                self._admit()
            else:
                self._leave(waiter)
            raise
        if not waiter.admitted.done():  # waited long enough: run over the limit
            self._leave(waiter)
            self.running += 1
            self.overruns += 1

    def _leave(self, waiter: _Waiter) -> None:
        self._waiting.remove(waiter)
        heapq.heapify(self._waiting)

    def _admit(self) -> None:
        while self._waiting and self.running < self.slots:
            waiter = heapq.heappop(self._waiting)
            self.running += 1
            waiter.admitted.set_result(None)
