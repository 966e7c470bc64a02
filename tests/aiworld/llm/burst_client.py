"""One worker process's burst of routine decisions through the shared token bucket.

python -m tests.aiworld.llm.burst_client <provider server url> <key prefix> <count>
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

import redis.asyncio as redis

from aiworld.config import LlmSettings, ProviderSettings, Settings
from aiworld.llm import build_router
from aiworld.models import NpcContext
from aiworld.store.keys import Keys
from aiworld.world.definition import load_world

REQUESTS_PER_MINUTE = 600  # ten a second for all processes together


async def main(url: str, prefix: str, count: int) -> None:
    store = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    provider = ProviderSettings(
        kind="ollama", endpoint=url, model="llama-test", requests_per_minute=REQUESTS_PER_MINUTE
    )
    settings = Settings(
        llm=LlmSettings(
            default_provider="ollama",
            providers={"ollama": provider},
            batch_size=1,
            prompt_cache_ttl_seconds=0,
            decision_cache_ttl_seconds=0,
        )
    )
    router = build_router(settings, store, Keys(prefix))
    base = load_world().npcs[0]
    contexts = [
        NpcContext(
            profile=base.model_copy(update={"npc_id": f"burst_{prefix[-6:-1]}_{n}"}), now=datetime.now(UTC), sequence=n
        )
        for n in range(count)
    ]
    await asyncio.gather(*(router.decide(context) for context in contexts))
    await router.aclose()
    await store.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
