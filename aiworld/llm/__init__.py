"""The LLM layer's entry point: the decision maker the worker hands to the NPC activities.

This version serves the offline policy, which needs no key and no network; a configuration that
names another provider is refused with a clear message instead of silently running offline.
"""

from __future__ import annotations

import redis.asyncio as redis

from aiworld.config import ConfigError, Settings
from aiworld.keys import Keys
from aiworld.offline_policy import OfflineDecisionMaker


def build_router(settings: Settings, store: redis.Redis, keys: Keys) -> OfflineDecisionMaker:
    wanted = {settings.llm.default_provider, *settings.llm.fallback, *settings.llm.tiers.values()} - {"offline"}
    if wanted or settings.llm.providers:
        named = ", ".join(sorted(wanted | set(settings.llm.providers)))
        raise ConfigError(
            f"AIWORLD_LLM__DEFAULT_PROVIDER: provider(s) {named} are not available in this version; "
            "use `offline` (the default)"
        )
    return OfflineDecisionMaker()
