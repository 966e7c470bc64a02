"""The real API app on the real dev server and Redis, with an NPC worker behind it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest_asyncio
import uvicorn

from aiworld.config import Settings
from api.app import create_app

API_KEYS = ["current-key", "next-key"]
JWT_SECRET = "test-secret-that-is-long-enough-for-hs256"


def api_settings(keys, task_queue) -> Settings:
    return Settings(
        api_keys=API_KEYS,
        jwt_secret=JWT_SECRET,
        jwt_ttl_seconds=60,
        redis_key_prefix=keys.prefix,
        task_queue=task_queue,
    )


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


def bound_socket() -> socket.socket:
    """A listening socket on a port of the system's choosing: nothing else can take the port
    between choosing it and serving on it."""
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    return listening


@asynccontextmanager
async def served(app, listening: socket.socket | None = None) -> AsyncIterator[str]:
    """The app under a real uvicorn on a socket bound beforehand (no free-port race); its base URL."""
    listening = listening or bound_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5))
    serving = asyncio.create_task(server.serve(sockets=[listening]))
    try:
        async with asyncio.timeout(30):
            while not server.started:
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{listening.getsockname()[1]}"
    finally:
        server.should_exit = True
        await serving
        listening.close()
