"""The API under a real uvicorn, over real sockets: what an in-process transport cannot show."""

from __future__ import annotations

import asyncio

import httpx
import pytest_asyncio

from api.app import create_app
from api.errors import MAX_BODY_BYTES
from tests.api.conftest import API_KEYS, api_settings, served
from tests.conftest import end_lives

CHUNK = b" " * 1024


@pytest_asyncio.fixture(loop_scope="session")
async def api_url(dev_env, redis_client, keys, task_queue):
    app = create_app(api_settings(keys, task_queue), client=dev_env.client, store=redis_client)
    async with served(app) as url:
        yield url
    await end_lives(dev_env.client, task_queue, set(), visibility=True)


async def refusals_counted(http: httpx.AsyncClient) -> bool:
    scraped = await http.get("/metrics")
    return 'route="/ai/world/state",status="413"' in scraped.text


async def test_a_chunked_body_is_refused_while_it_streams(api_url):
    """The upload stops after twice the limit and waits until the API has answered 413: an API
    that read the body whole before judging it would never answer, and the wait would time out."""
    sent = 0

    async def upload():
        nonlocal sent
        while sent < 2 * MAX_BODY_BYTES:
            sent += len(CHUNK)
            yield CHUNK
        async with httpx.AsyncClient(base_url=api_url, headers={"X-API-Key": API_KEYS[0]}) as observer:
            async with asyncio.timeout(20):
                while not await refusals_counted(observer):
                    await asyncio.sleep(0.05)

    async with httpx.AsyncClient(base_url=api_url, headers={"X-API-Key": API_KEYS[0]}, timeout=30) as http:
        answer = await http.post("/ai/world/state", content=upload(), headers={"Content-Type": "application/json"})
    assert "content-length" not in answer.request.headers and answer.request.headers["transfer-encoding"] == "chunked"
    assert answer.status_code == 413 and str(MAX_BODY_BYTES) in answer.json()["detail"]


async def test_a_refused_registration_keeps_the_connection(api_url):
    """A merge the profile cannot take used to escape as a 500 that dropped the keep-alive
    connection; now it is a 422 and the next request travels on the same connection."""
    newcomer = {"npc_id": "far_walker", "name": "Far Walker", "sprite": 50, "map": "payon", "x": 100, "y": 100}
    async with httpx.AsyncClient(base_url=api_url, headers={"X-API-Key": API_KEYS[0]}) as http:
        refused = await http.post("/ai/npc/register", json={**newcomer, "routine": [[400, 400]]})
        assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == "routine.0"
        first_connection = refused.extensions["network_stream"].get_extra_info("client_addr")
        accepted = await http.post("/ai/npc/register", json=newcomer)
        assert accepted.status_code == 201
        assert accepted.extensions["network_stream"].get_extra_info("client_addr") == first_connection
