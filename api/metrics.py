"""Prometheus metrics: requests of this process, and the LLM layer's counters that every worker
process adds to one hash in the state store (so one scrape of the API sees the whole fleet)."""

from __future__ import annotations

import time

import redis.asyncio as redis
from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from aiworld.store.keys import Keys


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

    def install(self, app: FastAPI) -> None:
        @app.middleware("http")
        async def measure(request: Request, call_next):
            began = time.perf_counter()
            response = await call_next(request)
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.requests.labels(request.method, path, str(response.status_code)).inc()
            self.latency.labels(path).observe(time.perf_counter() - began)
            return response

    async def render(self, store: redis.Redis) -> Response:
        for name, value in (await store.hgetall(self._keys.llm_counter())).items():
            try:
                self.llm.labels(name).set(float(value))
            except ValueError:
                continue  # not a number: never break a scrape over one bad field
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
