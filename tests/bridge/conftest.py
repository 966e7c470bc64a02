"""The whole slice on real parts: MariaDB with our tables, the API over HTTP, an NPC worker on the
dev server, Redis, and the script simulator in place of the map-server."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiomysql
import pytest_asyncio

from aiworld.config import Settings
from api.app import create_app
from tests.api.conftest import API_KEYS, api_settings, bound_socket, served
from tests.rathena.simulator import ScriptSimulator, install_game_tables


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
    listening = bound_socket()
    port = listening.getsockname()[1]
    settings = api_settings(keys, task_queue).model_copy(
        update={
            "api_url": f"http://127.0.0.1:{port}",
            "db_host": mariadb["host"],
            "db_port": mariadb["port"],
            "db_user": mariadb["user"],
            "db_name": mariadb["db"],
        }
    )
    app = create_app(settings, client=dev_env.client, store=redis_client)
    async with served(app, listening):
        yield Slice(settings, ScriptSimulator(mariadb), mariadb, settings.api_url)


__all__ = ["API_KEYS", "Slice", "slice_"]
