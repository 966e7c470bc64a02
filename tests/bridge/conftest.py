"""The whole slice on real parts: MariaDB with our tables, the API over HTTP, an NPC worker on the
dev server, Redis, and the script simulator in place of the map-server."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

import aiomysql
import pytest_asyncio
import uvicorn

from aiworld.config import Settings
from api.app import create_app
from tests.api.conftest import API_KEYS, api_settings
from tests.rathena.simulator import ScriptSimulator, install_game_tables


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Slice:
    settings: Settings
    game: ScriptSimulator
    db: dict
    api_url: str

    async def rows(self, sql: str, *args) -> list[tuple]:
        connection = await aiomysql.connect(**self.db, autocommit=True)
        try:
            async with connection.cursor() as cursor:
                await cursor.execute(sql, args)
                return list(await cursor.fetchall())
        finally:
            connection.close()

    async def until(self, probe, timeout: float = 60.0):
        async with asyncio.timeout(timeout):
            while not (value := await probe()):
                await asyncio.sleep(0.25)
            return value


@pytest_asyncio.fixture(loop_scope="session")
async def slice_(dev_life, dev_env, redis_client, keys, task_queue, mariadb):
    await install_game_tables(mariadb)
    port = free_port()
    settings = api_settings(keys, task_queue).model_copy(
        update={
            "api_url": f"http://127.0.0.1:{port}", "db_host": mariadb["host"], "db_port": mariadb["port"],
            "db_user": mariadb["user"], "db_name": mariadb["db"],
        }
    )  # fmt: skip
    app = create_app(settings, client=dev_env.client, store=redis_client)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        yield Slice(settings, ScriptSimulator(mariadb), mariadb, settings.api_url)
    finally:
        server.should_exit = True
        await serving


__all__ = ["API_KEYS", "Slice", "slice_"]
