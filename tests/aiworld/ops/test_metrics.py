"""The worker's metrics endpoints, scraped after a real worker processed events and a player's
line through an LLM provider's SDK (the suite's provider server), and the Grafana dashboard's
queries checked against what the worker and the API really export."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aiworld.config import LlmSettings, ObservabilitySettings, Settings
from aiworld.models import DecisionRecord, GameEvent, GameEventKind, PlayerRef, TalkReply, TalkTurn
from aiworld.npc.control import ensure_npc_started
from aiworld.ops.worker import running_worker
from aiworld.temporal import npc_workflow_id
from api.app import create_app
from tests.aiworld.llm.conftest import provider_server, provider_settings  # noqa: F401  (a fixture)
from tests.api.conftest import API_KEYS, api_settings, open_api
from tests.conftest import demo_profile, end_lives
from tests.processes import free_port

pytestmark = pytest.mark.dev_server

DASHBOARD = Path(__file__).parents[3] / "deploy" / "grafana" / "dashboards" / "aiworld.json"
ARIA = PlayerRef(char_id=150001, name="Aria", level=34)
GIFTS = 3
# Names the README documents for the worker's own endpoint.
OUR_COUNTERS = [
    "aiworld_decisions_total",
    "aiworld_actions_total",
    "aiworld_llm_calls_total",
    "aiworld_llm_tokens_total",
    "aiworld_llm_spend_total",
    "aiworld_llm_cache_hits_total",
]


@dataclass
class Scrape:
    samples: dict[str, float]  # "name{labels}" -> value, and name -> sum over its series

    def total(self, name: str) -> float:
        return self.samples.get(name, 0.0)


def parse(text: str) -> Scrape:
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
            samples[sample.name] = samples.get(sample.name, 0.0) + sample.value
    return Scrape(samples)


@asynccontextmanager
async def busy_worker(dev_env, task_queue, keys, server) -> AsyncIterator[tuple[int, int]]:
    """A worker process's wiring (`running_worker`) with both metrics ports, deciding with OpenAI's
    SDK at configured prices; Lina gets a gift and a player's line. Yields the two ports."""
    openai = provider_settings(server)["openai"].model_copy(
        update={"input_price_per_1k": 0.0025, "output_price_per_1k": 0.01}
    )
    sdk_port, our_port = free_port(), free_port()
    settings = Settings(
        temporal_address=dev_env.client.service_client.config.target_host,
        task_queue=task_queue,
        redis_key_prefix=keys.prefix,
        llm=LlmSettings(default_provider="openai", providers={"openai": openai}),
        observability=ObservabilitySettings(temporal_metrics_port=sdk_port, worker_metrics_port=our_port),
    )
    async with running_worker(settings):
        await ensure_npc_started(dev_env.client, demo_profile("lina_baker"), task_queue)
        handle = dev_env.client.get_workflow_handle(npc_workflow_id("lina_baker"))
        await handle.execute_update("talk", TalkTurn(turn_id="t-1", player=ARIA, text="Hello!"), result_type=TalkReply)
        # The same gift in the same situation, again: from the second time on, the decision cache answers.
        for _ in range(GIFTS):
            gift = GameEvent(
                event_id=f"gift-{uuid.uuid4().hex}",
                kind=GameEventKind.ITEM_RECEIVED,
                player=ARIA,
                item_id=512,
                amount=1,
            )
            await handle.signal("game_event", gift)
            async with asyncio.timeout(60):
                while not any(
                    d.event_ids == [gift.event_id]
                    for d in await handle.query("recent_decisions", result_type=list[DecisionRecord])
                ):
                    await asyncio.sleep(0.1)
        try:
            yield sdk_port, our_port
        finally:
            await end_lives(dev_env.client, task_queue, {npc_workflow_id("lina_baker")}, visibility=False)


async def scrape_until(port: int, ready) -> Scrape:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        async with asyncio.timeout(30):
            while True:
                scraped = parse((await http.get("/metrics")).text)
                if ready(scraped):
                    return scraped
                await asyncio.sleep(0.2)


async def test_a_worker_that_processed_events_exports_non_zero_counters_with_the_documented_names(
    dev_env,
    task_queue,
    redis_client,
    keys,
    provider_server,  # noqa: F811
):
    async with busy_worker(dev_env, task_queue, keys, provider_server) as (sdk_port, our_port):
        ours = await scrape_until(our_port, lambda s: all(s.total(name) > 0 for name in OUR_COUNTERS))
        sdk = await scrape_until(sdk_port, lambda s: s.total("temporal_workflow_task_queue_poll_succeed_total") > 0)
    assert ours.total('aiworld_decisions_total{provider="openai",trigger="events"}') == GIFTS
    assert ours.total('aiworld_decisions_total{provider="openai",trigger="talk"}') == 1
    assert ours.total('aiworld_actions_total{kind="reply",outcome="queued"}') == 1
    assert ours.total('aiworld_llm_tokens_total{direction="input",provider="openai",tier="dialogue"}') > 0
    assert ours.total("aiworld_llm_spend_total") > 0, "tokens at the configured prices"
    assert ours.total("aiworld_decision_seconds_count") == GIFTS + 1
    assert ours.total('aiworld_llm_cache_hits_total{provider="openai",tier="routine"}') >= 1
    assert "aiworld_action_queue_depth{}" in ours.samples
    assert sdk.total("temporal_workflow_task_execution_latency_seconds_count") > 0
    assert sdk.total("temporal_local_activity_execution_latency_seconds_count") > 0


def dashboard_metric_names() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert expressions, "the dashboard has queries"
    names: set[str] = set()
    for expression in expressions:
        without_labels = re.sub(r"\{[^}]*\}", "", expression)
        without_ranges = re.sub(r"\[[^\]]*\]", "", without_labels)
        names |= {
            word
            for word in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_ranges)
            if word.startswith(("aiworld_", "temporal_"))
        }
    return names


async def test_every_metric_the_dashboard_queries_is_exported_by_a_real_worker_or_api(
    dev_env,
    task_queue,
    redis_client,
    keys,
    provider_server,  # noqa: F811
):
    app = create_app(api_settings(keys, task_queue), client=dev_env.client, store=redis_client)
    async with busy_worker(dev_env, task_queue, keys, provider_server) as (sdk_port, our_port):
        ours = await scrape_until(our_port, lambda s: s.total("aiworld_decisions_total") > 0)
        sdk = await scrape_until(sdk_port, lambda s: s.total("temporal_workflow_task_queue_poll_succeed_total") > 0)
        async with app.router.lifespan_context(app), await open_api(app) as http:
            http.headers["X-API-Key"] = API_KEYS[0]
            claimed = (await http.get("/ai/actions", params={"limit": 1})).json()["actions"]
            assert claimed, "the busy worker queued actions"
            for _ in range(2):  # a bridge retry: counted once
                reported = await http.post(f"/ai/actions/{claimed[0]['action_id']}/result", json={"outcome": "done"})
                assert reported.status_code == 200, reported.text
            api = parse((await http.get("/metrics")).text)
    assert api.total('aiworld_action_results_total{outcome="done"}') == 1
    exported = {name.split("{")[0] for scrape in (ours, sdk, api) for name in scrape.samples}
    # Histograms are queried by their series (_bucket, _count, _sum), all exported under the family.
    queried = dashboard_metric_names()
    missing = sorted(name for name in queried if name not in exported)
    assert not missing, f"the dashboard queries metrics nobody exports: {missing}"
    assert any(name.startswith("aiworld_") for name in queried) and any(
        name.startswith("temporal_") for name in queried
    )
