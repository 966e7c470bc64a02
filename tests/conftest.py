"""Shared fixtures: real Temporal (time-skipping and dev server), real Redis, real MariaDB.

Every fixture isolates what it touches (a key prefix, a database of its own, a task queue per test)
and removes it afterwards, so tests neither depend on their order nor leave anything behind.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import aiomysql
import pytest
import pytest_asyncio
import redis.asyncio as redis
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from aiworld import binaries, search_attributes
from aiworld.keys import Keys
from aiworld.temporal import ensure_search_attributes

REDIS_URL = os.environ.get("AIWORLD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
MARIADB = {
    "host": os.environ.get("AIWORLD_TEST_DB_HOST", "127.0.0.1"),
    "port": int(os.environ.get("AIWORLD_TEST_DB_PORT", "3306")),
    "user": os.environ.get("AIWORLD_TEST_DB_USER", "root"),
    "password": os.environ.get("AIWORLD_TEST_DB_PASSWORD", ""),
}


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """The Java test server: timers jump ahead whenever every workflow is waiting."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binaries.temporal_test_server()),
        data_converter=pydantic_data_converter,
    )
    try:
        await ensure_search_attributes(env.client)
        yield env
    finally:
        await env.shutdown()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real dev server (in memory) with our search attributes and workflow pause enabled."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(binaries.temporal_cli()),
        data_converter=pydantic_data_converter,
        search_attributes=list(search_attributes.ALL),
        dev_server_extra_args=["--dynamic-config-value", "frontend.WorkflowPauseEnabled=true"],
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def keys() -> Keys:
    return Keys(prefix=f"test:{uuid.uuid4().hex[:12]}:")


@pytest_asyncio.fixture(loop_scope="session")
async def redis_client(keys: Keys) -> AsyncIterator[redis.Redis]:
    """The real Redis on 127.0.0.1:6379; every key the test writes carries `keys.prefix`."""
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        yield client
    finally:
        async for key in client.scan_iter(match=f"{keys.prefix}*", count=500):
            await client.delete(key)
        await client.aclose()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def mariadb() -> AsyncIterator[dict]:
    """A database of this test run's own on the real MariaDB, dropped at the end."""
    name = f"aiworld_test_{uuid.uuid4().hex[:10]}"
    admin = await aiomysql.connect(**MARIADB, autocommit=True)
    async with admin.cursor() as cursor:
        await cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield {**MARIADB, "db": name}
    finally:
        async with admin.cursor() as cursor:
            await cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()
