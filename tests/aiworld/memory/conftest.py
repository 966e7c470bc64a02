"""A store with vector search (valkey + RediSearch, both from PyPI) next to the plain local Redis,
so that every retrieval test runs on both search paths."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis.asyncio as redis

from aiworld.config import MemorySettings
from aiworld.memory.store import MemoryStore
from aiworld.store.keys import Keys
from tests.conftest import REDIS_URL
from tests.processes import ServerProcess, search_process


@pytest.fixture(scope="session")
def search_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = search_process(Path(tmp_path_factory.mktemp("search-server")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


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
