"""`aiworld doctor` names what is wrong and how to fix it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import aiomysql
from temporalio.testing import WorkflowEnvironment

from aiworld.config import LlmSettings, ProviderSettings, Settings
from aiworld.ops import binaries
from aiworld.ops.doctor import check_llm_provider, check_mariadb, check_redis, check_temporal
from aiworld.ops.worker import running_worker
from bridge.schema import install_schema
from tests.conftest import REDIS_URL


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_redis_down_names_the_url_and_the_fix():
    url = f"redis://127.0.0.1:{closed_port()}/0"
    result = await check_redis(Settings(redis_url=url))
    assert not result.ok
    assert url in result.name
    assert "AIWORLD_REDIS_URL" in result.fix and "redis-server --port" in result.fix


async def test_redis_up_passes():
    assert (await check_redis(Settings(redis_url="redis://127.0.0.1:6379/0"))).ok


async def test_mariadb_without_tables_says_to_import_them(mariadb):
    settings = Settings(
        db_host=mariadb["host"],
        db_port=mariadb["port"],
        db_user=mariadb["user"],
        db_password=mariadb["password"],
        db_name=mariadb["db"],
    )
    before = await check_mariadb(settings)
    assert not before.ok and "ai_event" in before.detail and "rathena/sql/ai_world.sql" in before.fix
    connection = await aiomysql.connect(**mariadb)
    await install_schema(connection)
    connection.close()
    assert (await check_mariadb(settings)).ok


async def test_temporal_up_and_down(dev_env):
    address = dev_env.client.service_client.config.target_host
    assert (await check_temporal(Settings(temporal_address=address))).ok
    down = await check_temporal(Settings(temporal_address=f"127.0.0.1:{closed_port()}"))
    assert not down.ok and "AIWORLD_TEMPORAL_ADDRESS" in down.fix


async def test_missing_search_attributes_are_named_and_the_worker_creates_them(redis_client, keys):
    """A plain `temporal server start-dev` has none of ours: the doctor says so, a worker's start adds them."""
    bare = await WorkflowEnvironment.start_local(dev_server_existing_path=str(binaries.temporal_cli()))
    try:
        address = bare.client.service_client.config.target_host
        settings = Settings(temporal_address=address, redis_url=REDIS_URL, redis_key_prefix=keys.prefix)
        before = await check_temporal(settings)
        assert not before.ok and "NpcActivity" in before.detail
        assert (
            f"temporal operator search-attribute create --address {address} --namespace default --name NpcMap --type Keyword"
            in before.fix
        )
        async with running_worker(settings):
            pass
        assert (await check_temporal(settings)).ok
    finally:
        await bare.shutdown()


async def test_unreachable_llm_provider_fails():
    settings = Settings(
        llm=LlmSettings(providers={"ollama": ProviderSettings(endpoint=f"http://127.0.0.1:{closed_port()}")})
    )
    result = await check_llm_provider("ollama", settings)
    assert not result.ok and "unreachable" in result.detail


def test_cli_doctor_with_redis_stopped(tmp_path):
    url = f"redis://127.0.0.1:{closed_port()}/0"
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIWORLD_") and key != "REDIS_URL"}
    env.update(AIWORLD_REDIS_URL=url, AIWORLD_TEMPORAL_ADDRESS=f"127.0.0.1:{closed_port()}", COLUMNS="300")
    done = subprocess.run(
        [sys.executable, "-m", "aiworld.cli", "doctor"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert url in done.stdout and "AIWORLD_REDIS_URL" in done.stdout
    assert "problem(s)" in done.stdout
