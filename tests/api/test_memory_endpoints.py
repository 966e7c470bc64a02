"""The memory endpoints on the real API app and Redis: scored memories with their parts,
relationships, the world graph; credentials first; 4xx naming the field."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as redis

from aiworld.config import LlmSettings, MemorySettings
from aiworld.llm import build_router
from aiworld.memory.embeddings import Embedder
from aiworld.memory.memori import MemoriBackend, MemoriStore
from aiworld.memory.store import MemoryStore
from aiworld.models import Memory
from aiworld.world.directory import NpcDirectory
from api.app import create_app
from tests.aiworld.llm.conftest import provider_settings
from tests.aiworld.llm.provider_server import ProviderServer, serve
from tests.api.conftest import API_KEYS, api_settings, open_api
from tests.api.test_parts_down import assert_generic_503, dead_port

NOW = datetime.now(UTC)


async def remembered(redis_client, keys) -> MemoryStore:
    store = MemoryStore(redis_client, keys)
    await store.remember_all(
        "lina_baker",
        [
            Memory(memory_id="herbs", text="Dax bought blue herbs from me", created_at=NOW - timedelta(hours=20)),
            Memory(memory_id="rain", text="It rained on the market", created_at=NOW - timedelta(minutes=5)),
        ],
    )
    return store


async def test_memories_come_scored_with_their_parts(api, redis_client, keys):
    await remembered(redis_client, keys)
    answer = await api.get("/ai/npc/lina_baker/memories", params={"query": "blue herbs?", "limit": 2})
    assert answer.status_code == 200
    body = answer.json()
    assert body["search"] == "in_process" and body["total"] == 2
    first, second = body["memories"]
    assert first["memory"]["memory_id"] == "herbs" and first["score"] > second["score"]
    assert set(first["parts"]) == {"relevance", "recency", "importance", "salience", "about"}
    assert first["parts"]["relevance"] > second["parts"]["relevance"]


async def test_relationships_and_the_world_graph(api, redis_client, keys):
    store = await remembered(redis_client, keys)
    await NpcDirectory(redis_client, keys).place("lina_baker", "prontera", 146, 182, "merchants")
    await store.adjust_relationship("lina_baker", "player:150001", 30, "gift-1", "a gift", NOW)
    await store.adjust_relationship("lina_baker", "npc:gareth_guard", -40, "quarrel-1", "a quarrel", NOW)
    await store.relationship_graph.adjust("faction:merchants", "faction:thieves", -80, "theft-1", "theft", NOW)

    relationships = (await api.get("/ai/npc/lina_baker/relationships")).json()["relationships"]
    assert [(r["party"], r["score"], r["type"]) for r in relationships] == [
        ("npc:gareth_guard", -40, "rival"),
        ("player:150001", 30, "friendly"),
    ]
    assert relationships[1]["history"][0]["reason"] == "a gift" and relationships[1]["last_interaction"]

    graph = (await api.get("/ai/world/graph")).json()
    assert {node["id"]: node["kind"] for node in graph["nodes"]} == {
        "faction:merchants": "faction",
        "faction:thieves": "faction",
        "npc:gareth_guard": "npc",
        "npc:lina_baker": "npc",
        "player:150001": "player",
    }
    assert {(e["source"], e["target"], e["type"]) for e in graph["edges"]} == {
        ("faction:merchants", "faction:thieves", "enemy"),
        ("npc:lina_baker", "npc:gareth_guard", "rival"),
        ("npc:lina_baker", "player:150001", "friendly"),
    }
    capped = (await api.get("/ai/world/graph", params={"max_edges": 1})).json()
    assert len(capped["edges"]) == 1 and capped["truncated"] is True


async def test_bad_requests_name_the_field_and_credentials_come_first(api, redis_client, keys):
    await remembered(redis_client, keys)
    for path, params, field in [
        ("/ai/npc/lina_baker/memories", {"limit": 0}, "limit"),
        ("/ai/npc/lina_baker/memories", {"query": "x" * 201}, "query"),
        ("/ai/npc/lina_baker/memories", {"about": "someone"}, "about"),
        ("/ai/npc/Not-An-Id/memories", {}, "npc_id"),
        ("/ai/npc/Not-An-Id/relationships", {}, "npc_id"),
        ("/ai/world/graph", {"max_edges": 10_001}, "max_edges"),
    ]:
        answer = await api.get(path, params=params)
        assert answer.status_code == 422, (path, params)
        assert [problem["field"] for problem in answer.json()["detail"]] == [field]
    assert (await api.get("/ai/npc/nobody_here/memories")).status_code == 404
    assert (await api.get("/ai/npc/nobody_here/relationships")).status_code == 404
    api.headers.pop("X-API-Key")
    for path in ("/ai/npc/lina_baker/memories", "/ai/npc/lina_baker/relationships", "/ai/world/graph"):
        assert (await api.get(path)).status_code == 401


async def test_a_state_store_down_is_a_503_naming_it(dev_env, keys, task_queue, caplog):
    with dead_port() as port:
        unreachable = redis.Redis.from_url(f"redis://127.0.0.1:{port}/0", decode_responses=True)
        app = create_app(api_settings(keys, task_queue), client=dev_env.client, store=unreachable)
        async with app.router.lifespan_context(app), await open_api(app) as http:
            http.headers["X-API-Key"] = API_KEYS[0]
            for path in ("/ai/npc/lina_baker/memories", "/ai/npc/lina_baker/relationships", "/ai/world/graph"):
                assert_generic_503(await http.get(path), "the state store", caplog, ["Connection refused"])
        await unreachable.aclose()


async def test_queries_are_embedded_in_the_space_of_the_configured_provider(dev_env, redis_client, keys, task_queue):
    server = ProviderServer()
    running, serving = await serve(server)
    try:
        llm = LlmSettings(default_provider="openai", providers={"openai": provider_settings(server)["openai"]})
        settings = api_settings(keys, task_queue).model_copy(update={"llm": llm})
        router = build_router(settings, redis_client, keys)
        provider = Embedder(redis_client, keys, functools.partial(router.embed, local_fallback=False))
        await MemoryStore(redis_client, keys, MemorySettings(), provider).remember(
            "lina_baker", Memory(memory_id="herbs", text="Dax bought blue herbs", created_at=NOW)
        )
        app = create_app(settings, client=dev_env.client, store=redis_client)
        async with app.router.lifespan_context(app), await open_api(app) as http:
            http.headers["X-API-Key"] = API_KEYS[0]
            before = server.calls["openai-embeddings"]
            answer = await http.get("/ai/npc/lina_baker/memories", params={"query": "herbs?"})
        assert server.calls["openai-embeddings"] == before + 1
        [found] = answer.json()["memories"]
        assert found["parts"]["relevance"] > 0.9  # both vectors from the provider's 3-dimensional space
        await router.aclose()
    finally:
        running.should_exit = True
        await serving


def memori_api(keys, task_queue, dev_env, redis_client, database: str):
    memory = MemorySettings(backend="memori", memori_database_url=database)
    settings = api_settings(keys, task_queue).model_copy(update={"memory": memory})
    return create_app(settings, client=dev_env.client, store=redis_client, reply_wait_seconds=10), memory


@pytest.mark.memori
async def test_on_memori_the_memories_are_ranked_by_memori(dev_env, redis_client, keys, task_queue, tmp_path):
    app, memory = memori_api(keys, task_queue, dev_env, redis_client, f"sqlite:///{tmp_path / 'memori.sqlite'}")
    backend = await MemoriBackend.open(memory)  # what the worker writes
    try:
        store = MemoriStore(redis_client, keys, memory, backend)
        await store.remember(
            "lina_baker",
            Memory(memory_id="herbs", text="Dax bought blue herbs from me", created_at=NOW - timedelta(hours=20)),
        )
        await store.remember(
            "lina_baker",
            Memory(memory_id="rain", text="It rained on the market", created_at=NOW - timedelta(minutes=5)),
        )
    finally:
        await backend.close()
    async with app.router.lifespan_context(app), await open_api(app) as http:
        http.headers["X-API-Key"] = API_KEYS[0]
        answer = await http.get("/ai/npc/lina_baker/memories", params={"query": "blue herbs?", "limit": 2})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["search"] == "memori" and body["total"] == 2
    first, second = body["memories"]
    assert first["memory"]["memory_id"] == "herbs" and first["parts"]["relevance"] > second["parts"]["relevance"]


@pytest.mark.memori
async def test_on_memori_its_database_down_answers_503(dev_env, redis_client, keys, task_queue):
    await remembered(redis_client, keys)
    with dead_port() as port:
        app, _ = memori_api(keys, task_queue, dev_env, redis_client, f"mysql+pymysql://root@127.0.0.1:{port}/none")
        async with app.router.lifespan_context(app), await open_api(app) as http:
            http.headers["X-API-Key"] = API_KEYS[0]
            answer = await http.get("/ai/npc/lina_baker/memories", params={"query": "blue herbs?"})
    assert answer.status_code == 503 and answer.headers["Retry-After"]
    assert "Memori is unavailable" in answer.json()["detail"]
