"""Prometheus metrics: requests of this process, and the LLM layer's counters that every worker
process adds to one hash in the state store (so one scrape of the API sees the whole fleet)."""

from __future__ import annotations

import time
from datetime import datetime

import redis.asyncio as redis
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aiworld.store.keys import Keys, text_of
from api.errors import HttpMiddleware


class ApiMetrics:
    def __init__(self, keys: Keys) -> None:
        self._keys = keys
        # One registry per app keeps several apps in one process (tests) apart.
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "aiworld_api_requests",
            "API requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "aiworld_api_request_seconds", "API request latency", ["route"], registry=self.registry
        )
        self.action_results = Counter(
            "aiworld_action_results",
            "Actions the game reported done or failed, each counted once",
            ["outcome"],
            registry=self.registry,
        )
        self.llm = Gauge(
            "aiworld_llm_total",
            "LLM layer counters across all workers (tokens, calls, cache hits, fallbacks)",
            ["counter"],
            registry=self.registry,
        )
        self.budget_rung = Gauge(
            "aiworld_llm_budget_rung",
            "Each tier's rung of the LLM budget ladder: 0 normal, 1 stretch_cadence, 2 wide_cache, "
            "3 cheapest_model, 4 offline_below_importance, 5 hard_cap",
            ["tier"],
            registry=self.registry,
        )
        self.budget_pressure = Gauge(
            "aiworld_llm_budget_pressure",
            "Each tier's spend as a share of its tightest budget (1 = hard cap)",
            ["tier"],
            registry=self.registry,
        )
        self.budget_rung_since = Gauge(
            "aiworld_llm_budget_rung_since_seconds",
            "When each tier entered its current rung (Unix time)",
            ["tier"],
            registry=self.registry,
        )

    def install(self, app: FastAPI) -> None:
        app.add_middleware(RequestMeasure, metrics=self)

    async def render(self, store: redis.Redis) -> Response:
        for name, value in (await store.hgetall(self._keys.llm_counter())).items():
            try:
                self.llm.labels(name).set(float(value))
            except ValueError:
                continue  # not a number: never break a scrape over one bad field
        for name, value in (await store.hgetall(self._keys.llm_ladder())).items():
            tier, _, field = text_of(name).rpartition(".")
            try:
                if field == "rung":
                    self.budget_rung.labels(tier).set(float(value))
                elif field == "pressure":
                    self.budget_pressure.labels(tier).set(float(value))
                elif field == "since":
                    self.budget_rung_since.labels(tier).set(datetime.fromisoformat(text_of(value)).timestamp())
            except ValueError:
                continue
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class RequestMeasure(HttpMiddleware):
    """Counts and times each request by route and status. Pure ASGI: as an `@app.middleware("http")`
    it cost the API a task group and a streamed copy of every response (the API's CPU per decision
    at 30 events/s went from 5.4-6.3 to 4.9 ms without them, README "Benchmarks")."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        super().__init__(app)
        self._metrics = metrics

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        began = time.perf_counter()
        counted = False

        def count(status: int) -> None:
            nonlocal counted
            counted = True
            # The router puts the matched route in the scope: a route's template, never a raw path.
            path = getattr(scope.get("route"), "path", "unmatched")
            self._metrics.requests.labels(scope["method"], path, str(status)).inc()
            self._metrics.latency.labels(path).observe(time.perf_counter() - began)

        async def send_counting(message: Message) -> None:
            # Counted when the answer starts: a stream (the viewer's) stays open for minutes.
            if message["type"] == "http.response.start":
                count(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_counting)
        finally:
            if not counted:  # the app raised before it answered: the client gets a 500
                count(500)
