"""Coalescing concurrent routine decisions of many NPCs into one LLM call.

Decisions that arrive within `llm.batch_window_ms` of each other (at most `llm.batch_size`) go
out as one structured request; the answer is split back per NPC and each part is validated on
its own, so one malformed entry fails only its NPC, which then falls back alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from aiworld.models import Decision, DecisionUsage, NpcContext, describe_invalid


class BatchDecisions(BaseModel):
    """What a batched call answers: one entry per NPC, each checked separately afterwards."""

    decisions: list[dict[str, Any]] = Field(description="one {npc_id, decision} object per NPC of the request")


class EntryInvalid(Exception):
    """This NPC's part of a batched answer was missing or invalid."""


BatchCall = Callable[[list[NpcContext]], Awaitable[tuple[BatchDecisions, DecisionUsage]]]


def split_answer(answer: BatchDecisions, npc_ids: list[str]) -> dict[str, Decision | str]:
    """Each NPC's Decision, or why its entry cannot be used."""
    found: dict[str, Decision | str] = {npc_id: "no entry for this NPC in the batched answer" for npc_id in npc_ids}
    for entry in answer.decisions:
        npc_id = entry.get("npc_id")
        if npc_id not in found:
            continue
        try:
            found[npc_id] = Decision.model_validate(entry.get("decision"))
        except ValidationError as error:
            found[npc_id] = describe_invalid(error)
    return found


class DecisionBatcher:
    def __init__(self, call: BatchCall, window_seconds: float, size: int) -> None:
        self._call = call
        self._window = window_seconds
        self._size = size
        self._waiting: list[tuple[NpcContext, asyncio.Future]] = []
        self._timer: asyncio.TimerHandle | None = None

    async def submit(self, context: NpcContext) -> tuple[Decision, DecisionUsage]:
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._waiting.append((context, future))
        if len(self._waiting) >= self._size:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._window, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiting:
            batch, self._waiting = self._waiting[: self._size], self._waiting[self._size :]
            asyncio.get_running_loop().create_task(self._send(batch))
            if len(self._waiting) < self._size:
                break
        if self._waiting and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._window, self._flush)

    async def _send(self, batch: list[tuple[NpcContext, asyncio.Future]]) -> None:
        try:
            answer, usage = await self._call([context for context, _ in batch])
        except Exception as error:  # the whole call failed: every NPC of it falls back on its own
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        share = usage.model_copy(
            update={
                "tokens_in": usage.tokens_in // len(batch),
                "tokens_out": usage.tokens_out // len(batch),
                "cost": usage.cost / len(batch),
                "batch_size": len(batch),
            }
        )
        results = split_answer(answer, [context.profile.npc_id for context, _ in batch])
        for context, future in batch:
            result = results[context.profile.npc_id]
            if future.done():
                continue
            if isinstance(result, Decision):
                future.set_result((result, share))
            else:
                future.set_exception(EntryInvalid(result))
