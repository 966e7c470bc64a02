"""`aiworld doctor` on the memory: which vector search the store offers, and why Memori is refused."""

from __future__ import annotations

import socket

import pytest

from aiworld.config import ConfigError, MemorySettings, Settings
from aiworld.ops.doctor import check_memory
from aiworld.ops.worker import running_worker
from tests.conftest import REDIS_URL


async def test_the_builtin_store_says_how_it_searches():
    result = await check_memory(Settings(redis_url=REDIS_URL))
    assert result.ok and "in-process cosine" in result.detail and "cap 500" in result.detail


async def test_the_builtin_store_with_ft_search(search_server):
    result = await check_memory(Settings(redis_url=f"redis://127.0.0.1:{search_server.port}/0"))
    assert result.ok and "FT.SEARCH KNN" in result.detail


async def test_asking_for_store_search_where_there_is_none_fails_with_the_fix():
    result = await check_memory(Settings(redis_url=REDIS_URL, memory=MemorySettings(vector_search="store")))
    assert not result.ok and "AIWORLD_MEMORY__VECTOR_SEARCH=auto" in result.fix


async def test_a_store_down_fails_the_check():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = await check_memory(Settings(redis_url=f"redis://127.0.0.1:{port}/0"))
    assert not result.ok and "does not answer" in result.detail


async def test_memori_is_explained_and_the_worker_refuses_it():
    settings = Settings(redis_url=REDIS_URL, memory=MemorySettings(backend="memori"))
    result = await check_memory(settings)
    assert not result.ok and "torch" in result.detail and "Hugging Face" in result.detail
    with pytest.raises(ConfigError, match="AIWORLD_MEMORY__BACKEND"):
        async with running_worker(settings):
            pass
