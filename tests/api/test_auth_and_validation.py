"""Who may call the API, and how precisely it says what is wrong with a request."""

from __future__ import annotations

import time

import httpx
import jwt
from pydantic import SecretStr

from api.app import create_app
from api.auth import PerClientLimit
from tests.api.conftest import API_KEYS, JWT_SECRET, api_settings, open_api


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
    forged = jwt.encode(
        {"sub": "key-0", "exp": int(time.time()) + 60}, "another-secret-of-the-same-length-as-ours", "HS256"
    )
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

    bad_kind = await api.post(
        "/ai/npc/event", json={"npc_id": "lina_baker", "event": {"event_id": "e", "kind": "teleport"}}
    )
    assert bad_kind.json()["detail"][0]["field"] == "event.kind"

    needs_player = await api.post(
        "/ai/npc/event", json={"npc_id": "lina_baker", "event": {"event_id": "e", "kind": "player_nearby"}}
    )
    assert needs_player.status_code == 422 and "needs `player`" in needs_player.json()["detail"][0]["message"]

    bad_id = await api.post(
        "/ai/npc/register",
        json={"npc_id": "Robert'); DROP TABLE", "name": "x", "sprite": 1, "map": "prontera", "x": 1, "y": 1},
    )
    assert bad_id.status_code == 422 and bad_id.json()["detail"][0]["field"] == "npc_id"

    not_json = await api.post("/ai/npc/event", content=b"{not json", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 422

    bad_limit = await api.get("/ai/actions", params={"limit": 0})
    assert bad_limit.status_code == 422 and bad_limit.json()["detail"][0]["field"] == "limit"


async def test_oversized_bodies_are_413(api):
    answer = await api.post(
        "/ai/npc/event", content=b"{" + b" " * 70_000 + b"}", headers={"Content-Type": "application/json"}
    )
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
        ("POST", "/ai/auth/token"),
        ("POST", "/ai/npc/register"),
        ("POST", "/ai/npc/event"),
        ("GET", "/ai/npc/{npc_id}/action"),
        ("GET", "/ai/actions"),
        ("POST", "/ai/actions/{action_id}/result"),
        ("POST", "/ai/world/state"),
        ("GET", "/ai/world/state"),
        ("POST", "/ai/player/interaction"),
        ("GET", "/ai/npc/{npc_id}"),
        ("GET", "/health"),
        ("GET", "/ready"),
        ("GET", "/metrics"),
    }
    assert expected <= paths
    assert "TalkTurn" in spec["components"]["schemas"] and "GameEvent" in spec["components"]["schemas"]
    talk = spec["paths"]["/ai/player/interaction"]["post"]["responses"]
    assert {"401", "404", "409", "413", "422", "503", "504"} <= set(talk)
    for path, item in spec["paths"].items():  # every route taking a body says what a bad one gets
        for method, operation in item.items():
            if "requestBody" in operation:
                assert {"413", "422"} <= set(operation["responses"]), (method, path)
    assert "429" in spec["paths"]["/ai/auth/token"]["post"]["responses"]
    assert "503" in spec["paths"]["/ai/npc/{npc_id}"]["get"]["responses"]


async def test_a_token_dies_with_its_key_when_the_keys_rotate(dev_env, redis_client, keys, task_queue):
    """Minted while `old,new` were configured; after a restart with `new` alone, the `old` token is
    refused at once, and the `new` one still works although its key moved in the list."""
    rotating = api_settings(keys, task_queue).model_copy(
        update={"api_keys": [SecretStr("old-key"), SecretStr("new-key")]}
    )
    rotated = rotating.model_copy(update={"api_keys": [SecretStr("new-key")]})
    tokens = {}
    before = create_app(rotating, client=dev_env.client, store=redis_client)
    async with before.router.lifespan_context(before), await open_api(before) as http:
        for key in ("old-key", "new-key"):
            tokens[key] = (await http.post("/ai/auth/token", json={"api_key": key})).json()["access_token"]
    claims = jwt.decode(tokens["old-key"], JWT_SECRET, algorithms=["HS256"])
    assert "old-key" not in claims["sub"] and not claims["sub"].startswith("key-")  # a fingerprint, not a position

    after = create_app(rotated, client=dev_env.client, store=redis_client)
    async with after.router.lifespan_context(after), await open_api(after) as http:
        refused = await http.get("/ai/world/state", headers={"Authorization": f"Bearer {tokens['old-key']}"})
        assert refused.status_code == 401 and "no longer accepted" in refused.json()["detail"]
        kept = await http.get("/ai/world/state", headers={"Authorization": f"Bearer {tokens['new-key']}"})
        assert kept.status_code == 200


async def test_token_requests_are_limited_per_client(dev_env, redis_client, keys, task_queue):
    settings = api_settings(keys, task_queue).model_copy(update={"token_requests_per_minute": 3})
    app = create_app(settings, client=dev_env.client, store=redis_client)

    def from_address(host: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(host, 40000)), base_url="http://api")

    async with app.router.lifespan_context(app):
        async with from_address("10.0.0.1") as greedy, from_address("10.0.0.2") as other:
            # Wrong keys count too: the limit is what stops guessing.
            answers = [
                await greedy.post("/ai/auth/token", json={"api_key": key})
                for key in ("guess", API_KEYS[0], API_KEYS[1])
            ]
            assert [answer.status_code for answer in answers] == [401, 200, 200]
            limited = await greedy.post("/ai/auth/token", json={"api_key": API_KEYS[0]})
            assert limited.status_code == 429
            # 3 a minute: one request back every 20 s.
            assert 1 <= int(limited.headers["Retry-After"]) <= 20
            assert (await other.post("/ai/auth/token", json={"api_key": API_KEYS[0]})).status_code == 200


def test_the_limit_forgets_clients_whose_bucket_is_full_again():
    limit = PerClientLimit(per_minute=2, max_clients=2)
    assert limit.acquire("a", now=0.0) == 0 and limit.acquire("a", now=0.0) == 0
    assert limit.acquire("a", now=0.0) == 30.0  # empty: one request back after 60/2 s
    assert limit.acquire("b", now=10.0) == 0
    assert limit.acquire("c", now=65.0) == 0  # a third client: those idle for a minute are forgotten
    assert len(limit) == 2
    assert limit.acquire("a", now=65.0) == 0  # and `a`, forgotten, starts full like a new client


async def test_credentials_are_checked_before_the_body(api):
    api.headers.pop("X-API-Key")
    for body in (b"{not json", b'{"npc_id": 5}', b"[]"):
        answer = await api.post("/ai/npc/register", content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 401, body


async def test_unparseable_json_names_the_body(api):
    answer = await api.post(
        "/ai/npc/event", content=b'{"npc_id": "lina_baker",', headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 422
    [problem] = answer.json()["detail"]
    assert problem["field"] == "body" and "JSON" in problem["message"]


async def test_coordinates_are_strict_integers(api):
    newcomer = {"npc_id": "strict_one", "name": "Strict", "sprite": 50, "map": "payon", "x": 100, "y": 100}
    for routine, field in (
        ([[0, False]], "routine.0.1"),
        ([[100, "101"]], "routine.0.1"),
        ([[100.5, 100]], "routine.0.0"),
    ):
        answer = await api.post("/ai/npc/register", json={**newcomer, "routine": routine})
        assert answer.status_code == 422 and answer.json()["detail"][0]["field"] == field, routine
    flag = await api.post("/ai/npc/register", json={**newcomer, "x": True})
    assert flag.status_code == 422 and flag.json()["detail"][0]["field"] == "x"
    too_many = await api.post("/ai/npc/register", json={**newcomer, "unwalkable": [[1, 1]] * 21})
    assert too_many.status_code == 422 and too_many.json()["detail"][0]["field"] == "unwalkable"


async def test_every_response_carries_a_request_id(api):
    answers = [
        await api.get("/health"),
        await api.get("/ai/world/state"),
        await api.get("/ai/world/state", headers={"X-API-Key": "guess"}),
        await api.get("/no/such/route"),
        await api.post("/ai/npc/event", content=b"{", headers={"Content-Type": "application/json"}),
    ]
    ids = [answer.headers["X-Request-ID"] for answer in answers]
    assert [answer.status_code for answer in answers] == [200, 200, 401, 404, 422]
    assert len(set(ids)) == len(ids) and all(len(rid) == 32 for rid in ids)
