"""Request metrics: every request counted once by route template and the status the client got."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from aiworld.store.keys import Keys
from api.metrics import ApiMetrics


def _app_with_metrics() -> tuple[FastAPI, ApiMetrics]:
    app = FastAPI()
    metrics = ApiMetrics(Keys("test"))

    @app.get("/npc/{npc_id}")
    async def npc(npc_id: str) -> dict[str, str]:
        if npc_id == "broken":
            raise RuntimeError("a fault of ours")
        return {"npc_id": npc_id}

    metrics.install(app)
    return app, metrics


def _count(metrics: ApiMetrics, route: str, status: str) -> float:
    return (
        metrics.registry.get_sample_value(
            "aiworld_api_requests_total", {"method": "GET", "route": route, "status": status}
        )
        or 0.0
    )


async def test_requests_are_counted_by_route_template_and_status() -> None:
    app, metrics = _app_with_metrics()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        assert (await client.get("/npc/bench_1")).status_code == 200
        assert (await client.get("/npc/bench_2")).status_code == 200
        assert (await client.get("/nowhere")).status_code == 404
        assert (await client.get("/npc/broken")).status_code == 500

    assert _count(metrics, "/npc/{npc_id}", "200") == 2
    assert _count(metrics, "unmatched", "404") == 1
    # The route raised before it answered: counted as the 500 the client got, once.
    assert _count(metrics, "/npc/{npc_id}", "500") == 1
    assert metrics.registry.get_sample_value("aiworld_api_request_seconds_count", {"route": "/npc/{npc_id}"}) == 3
