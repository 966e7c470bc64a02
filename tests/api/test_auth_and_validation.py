"""Who may call the API, and how precisely it says what is wrong with a request."""

from __future__ import annotations

import time

import jwt

from tests.api.conftest import API_KEYS, JWT_SECRET


async def test_keys_become_short_lived_tokens(api):
    anonymous = {k: v for k, v in api.headers.items() if k.lower() != "x-api-key"}
    for key in API_KEYS:  # both keys of a rotation work
        issued = await api.post("/ai/auth/token", json={"api_key": key}, headers=anonymous)
        assert issued.status_code == 200
        token = issued.json()["access_token"]
        assert issued.json()["expires_in"] == 60
        api.headers.pop("X-API-Key", None)
        state = await api.get("/ai/world/state", headers={"Authorization": f"Bearer {token}"})
        assert state.status_code == 200


async def test_missing_invalid_and_expired_credentials_are_401(api):
    api.headers.pop("X-API-Key")
    missing = await api.get("/ai/world/state")
    assert missing.status_code == 401 and "missing credentials" in missing.json()["detail"]
    assert (await api.post("/ai/auth/token", json={"api_key": "guess"})).status_code == 401
    assert (await api.get("/ai/world/state", headers={"X-API-Key": "guess"})).status_code == 401
    assert (await api.get("/ai/world/state", headers={"Authorization": "Bearer not-a-jwt"})).status_code == 401
    forged = jwt.encode({"sub": "key-0", "exp": int(time.time()) + 60}, "another-secret-of-the-same-length-as-ours", "HS256")
    assert (await api.get("/ai/world/state", headers={"Authorization": f"Bearer {forged}"})).status_code == 401
    expired = jwt.encode({"sub": "key-0", "iat": 0, "exp": int(time.time()) - 5}, JWT_SECRET, "HS256")
    answer = await api.get("/ai/world/state", headers={"Authorization": f"Bearer {expired}"})
    assert answer.status_code == 401 and "expired" in answer.json()["detail"]
    assert (await api.get("/health")).status_code == 200  # health needs no credentials


async def test_wrong_payloads_name_the_field(api):
    long_text = await api.post(
        "/ai/player/interaction",
        json={"npc_id": "lina_baker", "turn": {"player": {"char_id": 1, "name": "Aria"}, "text": "x" * 500}},
    )
    assert long_text.status_code == 422
    assert long_text.json()["detail"][0]["field"] == "turn.text"

    smuggled = await api.post(
        "/ai/npc/event",
        json={"npc_id": "lina_baker", "event": {"event_id": "e", "kind": "world_event", "text": "x", "zeny": 1}},
    )
    assert smuggled.status_code == 422
    assert smuggled.json()["detail"][0]["field"] == "event.zeny"

    bad_kind = await api.post("/ai/npc/event", json={"npc_id": "lina_baker", "event": {"event_id": "e", "kind": "teleport"}})
    assert bad_kind.json()["detail"][0]["field"] == "event.kind"

    needs_player = await api.post("/ai/npc/event", json={"npc_id": "lina_baker", "event": {"event_id": "e", "kind": "player_nearby"}})
    assert needs_player.status_code == 422 and "needs `player`" in needs_player.json()["detail"][0]["message"]

    bad_id = await api.post("/ai/npc/register", json={"npc_id": "Robert'); DROP TABLE", "name": "x", "sprite": 1, "map": "prontera", "x": 1, "y": 1})
    assert bad_id.status_code == 422 and bad_id.json()["detail"][0]["field"] == "npc_id"

    not_json = await api.post("/ai/npc/event", content=b"{not json", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 422

    bad_limit = await api.get("/ai/actions", params={"limit": 0})
    assert bad_limit.status_code == 422 and bad_limit.json()["detail"][0]["field"] == "limit"


async def test_oversized_bodies_are_413(api):
    answer = await api.post("/ai/npc/event", content=b"{" + b" " * 70_000 + b"}", headers={"Content-Type": "application/json"})
    assert answer.status_code == 413


async def test_metrics_need_credentials_and_count_requests(api, redis_client, keys):
    # What the LLM layer of every worker counts in the state store is exported here.
    await redis_client.hset(keys.llm_counter(), mapping={"openai.routine.calls": 3, "openai.routine.tokens_in": 1200})
    await api.get("/ai/world/state")
    anonymous = await api.get("/metrics", headers={"X-API-Key": "guess"})
    assert anonymous.status_code == 401
    scraped = await api.get("/metrics")
    assert scraped.status_code == 200
    assert 'aiworld_api_requests_total{method="GET",route="/ai/world/state",status="200"}' in scraped.text
    assert 'aiworld_llm_total{counter="openai.routine.calls"} 3.0' in scraped.text
    assert 'aiworld_llm_total{counter="openai.routine.tokens_in"} 1200.0' in scraped.text


async def test_openapi_documents_every_endpoint(api):
    spec = (await api.get("/openapi.json")).json()
    paths = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    expected = {
        ("POST", "/ai/auth/token"), ("POST", "/ai/npc/register"), ("POST", "/ai/npc/event"),
        ("GET", "/ai/npc/{npc_id}/action"), ("GET", "/ai/actions"), ("POST", "/ai/actions/{action_id}/result"),
        ("POST", "/ai/world/state"), ("GET", "/ai/world/state"), ("POST", "/ai/player/interaction"),
        ("GET", "/ai/npc/{npc_id}"), ("GET", "/health"), ("GET", "/ready"), ("GET", "/metrics"),
    }  # fmt: skip
    assert expected <= paths
    assert "TalkTurn" in spec["components"]["schemas"] and "GameEvent" in spec["components"]["schemas"]
    assert "504" in spec["paths"]["/ai/player/interaction"]["post"]["responses"]
