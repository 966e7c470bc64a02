"""The worker's own Prometheus metrics: what the NPCs decide, what it costs, how full the queue is.

They live in a prometheus_client registry of their own, served on a port apart from the Temporal
SDK's metrics: the SDK's exporter is an HTTP server inside Temporal's Rust core with a registry
Python cannot add to, and keeping ours in prometheus_client keeps their names, units and `_total`
suffixes under our control. Both ports are settings (`AIWORLD_OBSERVABILITY__*_METRICS_PORT`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter as Counter_
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from wsgiref.simple_server import WSGIServer

import redis.asyncio as redis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from redis.exceptions import RedisError

from aiworld.models import DecisionRecord, DecisionUsage, QueuedAction
from aiworld.store.keys import Keys

log = logging.getLogger(__name__)

OFFLINE = "offline"
QUEUE_SAMPLE_SECONDS = 5.0
DECISION_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class WorkerMetrics:
    def __init__(self) -> None:
        # One registry per worker keeps several workers in one process (tests) apart.
        self.registry = CollectorRegistry()
        self.decisions = Counter(
            "aiworld_decisions",
            "Decisions NPCs made, by what triggered them and who decided",
            ["trigger", "provider"],
            registry=self.registry,
        )
        self.decision_seconds = Histogram(
            "aiworld_decision_seconds",
            "Time the decision maker (an LLM, the offline policy, the routine) took per decision",
            ["provider"],
            buckets=DECISION_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.actions = Counter(
            "aiworld_actions",
            "Actions by kind and outcome: queued for the game, or rejected by the game rules",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "aiworld_action_queue_depth", "Actions queued for the game and not yet finished", registry=self.registry
        )
        self.llm_calls = Counter(
            "aiworld_llm_calls",
            "LLM calls made for decisions and replies",
            ["provider", "tier"],
            registry=self.registry,
        )
        self.llm_tokens = Counter(
            "aiworld_llm_tokens",
            "LLM tokens by direction (input, output)",
            ["provider", "tier", "direction"],
            registry=self.registry,
        )
        self.llm_cache_hits = Counter(
            "aiworld_llm_cache_hits",
            "Decisions and replies served from the prompt or decision cache",
            ["provider", "tier"],
            registry=self.registry,
        )
        self.llm_spend = Counter(
            "aiworld_llm_spend",
            "LLM spend at the providers' configured prices per 1,000 tokens (in the operator's currency)",
            ["provider", "tier"],
            registry=self.registry,
        )

        self.fanout_signals = Counter(
            "aiworld_coordinator_signals",
            "World news signalled by the event coordinator, by outcome: told a living NPC, or the NPC no longer lives",
            ["outcome"],
            registry=self.registry,
        )

    def told(self, delivered: int, not_living: int) -> None:
        """One page of a fan-out was delivered (a retried page counts what it sends again)."""
        self.fanout_signals.labels("delivered").inc(delivered)
        self.fanout_signals.labels("not_living").inc(not_living)

    def usage(self, usage: DecisionUsage) -> None:
        """One decision or reply from the decision maker: a call, a cache hit, or the offline policy."""
        if usage.cached:
            self.llm_cache_hits.labels(usage.provider, usage.tier).inc()
            return
        if usage.provider == OFFLINE:
            return
        self.llm_calls.labels(usage.provider, usage.tier).inc()
        self.llm_tokens.labels(usage.provider, usage.tier, "input").inc(usage.tokens_in)
        self.llm_tokens.labels(usage.provider, usage.tier, "output").inc(usage.tokens_out)
        # The router prices each call (a batched call's share per NPC) with the provider's prices.
        self.llm_spend.labels(usage.provider, usage.tier).inc(usage.cost)

    def saved(self, decision: DecisionRecord | None, actions: list[QueuedAction]) -> None:
        """A decision's outcome was written: the decision, and its actions queued or rejected."""
        for queued in actions:
            self.actions.labels(queued.action.kind, "queued").inc()
        if decision is None:
            return
        provider = decision.usage.provider if decision.trigger != "routine" else "routine"
        self.decisions.labels(decision.trigger, provider).inc()
        self.decision_seconds.labels(provider).observe(decision.usage.latency_ms / 1000)
        decided: Counter_[str] = Counter_(action.kind for action in decision.decision.actions)
        decided.subtract(queued.action.kind for queued in actions)
        for kind, rejected in decided.items():
            if rejected > 0:
                self.actions.labels(kind, "rejected").inc(rejected)

    async def sample_queue(self, store: redis.Redis, keys: Keys, stop: asyncio.Event) -> None:
        """Keep the queue depth current; a store that does not answer leaves the last value."""
        while not stop.is_set():
            try:
                self.queue_depth.set(await store.zcard(keys.ready_actions()))
            except (RedisError, OSError) as error:
                log.warning("queue depth not sampled: %r", error)
            try:
                await asyncio.wait_for(stop.wait(), QUEUE_SAMPLE_SECONDS)
            except TimeoutError:
                pass

    @asynccontextmanager
    async def served(self, host: str, port: int, store: redis.Redis, keys: Keys) -> AsyncIterator[None]:
        """Serve the registry over HTTP and keep the queue depth sampled while the worker runs."""
        server, thread = start_http_server(port, host, registry=self.registry)
        stop = asyncio.Event()
        sampler = asyncio.create_task(self.sample_queue(store, keys, stop))
        try:
            yield
        finally:
            stop.set()
            await sampler
            _shut(server, thread)


def _shut(server: WSGIServer, thread: threading.Thread) -> None:
    server.shutdown()
    server.server_close()
    thread.join()
