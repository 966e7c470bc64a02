"""Both search paths for every retrieval test: the plain local Redis searched in process, and the
session's search server (tests/conftest.py) with FT.SEARCH."""

from __future__ import annotations

import pytest
import pytest_asyncio
import redis.asyncio as redis

from aiworld.config import MemorySettings
from aiworld.memory.store import MemoryStore
from aiworld.store.keys import Keys
from tests.conftest import REDIS_URL
from tests.processes import ServerProcess


@pytest_asyncio.fixture(loop_scope="session", params=["in_process", "store"])
async def search_path(request: pytest.FixtureRequest, search_server: ServerProcess, keys: Keys):
    """(path, client): the local Redis searched in process, or the search server's FT.SEARCH."""
    url = REDIS_URL if request.param == "in_process" else f"redis://127.0.0.1:{search_server.port}/0"
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        yield request.param, client
    finally:
        async for key in client.scan_iter(match=f"{keys.prefix}*", count=500):
            await client.delete(key)
        if request.param == "store":
            for index in await client.execute_command("FT._LIST"):
                if str(index).startswith(keys.prefix):
                    await client.ft(str(index)).dropindex()
        await client.aclose()


@pytest.fixture
def memory_store(search_path: tuple[str, redis.Redis], keys: Keys):
    """Makes a MemoryStore on the test's search path, with the given memory settings."""
    path, client = search_path

    def make(**settings) -> MemoryStore:
        store = MemoryStore(client, keys, MemorySettings(vector_search=path, **settings))
        return store

    return make
