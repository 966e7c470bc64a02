"""The real API app on the real dev server and Redis, with an NPC worker behind it."""

from __future__ import annotations

import httpx
import pytest_asyncio

from aiworld.config import Settings
from api.app import create_app

API_KEYS = ["current-key", "next-key"]
JWT_SECRET = "test-secret-that-is-long-enough-for-hs256"


def api_settings(keys, task_queue) -> Settings:
    return Settings(
        api_keys=API_KEYS, jwt_secret=JWT_SECRET, jwt_ttl_seconds=60,
        redis_key_prefix=keys.prefix, task_queue=task_queue,
    )  # fmt: skip


async def open_api(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


@pytest_asyncio.fixture(loop_scope="session")
async def api(dev_life, dev_env, redis_client, keys, task_queue):
    """An authenticated client of the API (X-API-Key)."""
    app = create_app(api_settings(keys, task_queue), client=dev_env.client, store=redis_client, reply_wait_seconds=10)
    async with app.router.lifespan_context(app):
        async with await open_api(app) as http:
            http.headers["X-API-Key"] = API_KEYS[0]
            yield http
