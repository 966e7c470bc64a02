"""The LLM layer: providers behind one interface, routed by task tier with the offline policy as
the last link of every chain. `build_router` is what the worker hands to the NPC activities."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis.asyncio as redis

from aiworld.config import ConfigError, Settings
from aiworld.llm.router import LlmRouter
from aiworld.store.keys import Keys

__all__ = ["LlmRouter", "build_router"]


def build_router(
    settings: Settings, store: redis.Redis, keys: Keys, clock: Callable[[], float] = time.time
) -> LlmRouter:
    known = set(settings.llm.providers) | {"offline"}
    wanted = {settings.llm.default_provider, *settings.llm.fallback, *settings.llm.tiers.values()}
    unknown = sorted(wanted - known)
    if unknown:
        raise ConfigError(
            f"AIWORLD_LLM__DEFAULT_PROVIDER / llm.fallback / llm.tiers: {', '.join(unknown)} not in llm.providers "
            f"(configured: {', '.join(sorted(known))})"
        )
    try:
        return LlmRouter(settings, store, keys, clock)
    except ValueError as error:
        raise ConfigError(str(error)) from None
