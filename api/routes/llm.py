"""`GET /ai/llm/budget`: what the LLM layer may spend, what it spent, and where each tier stands
on the budget governor's degradation ladder (since when and why)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis.asyncio as redis
from fastapi import APIRouter

from aiworld.config import Settings
from aiworld.llm.governor import BudgetGovernor
from aiworld.store.keys import Keys
from api.errors import within

STORE_WAIT_SECONDS = 3.0


def install(router: APIRouter, settings: Settings, keys: Keys, store: Callable[[], redis.Redis]) -> None:
    @router.get("/ai/llm/budget", tags=["llm"])
    async def llm_budget() -> dict[str, Any]:
        """Budgets, this window's spend, each tier's rung of the degradation ladder (entered when
        and why) and the latest rung changes. `offline: true` when a hard cap is reached: every
        decision and reply of the capped tiers is then made by the offline policy."""
        governor = BudgetGovernor(settings.llm.budget, store(), keys)
        return await within(STORE_WAIT_SECONDS, governor.report(), "the state store")
