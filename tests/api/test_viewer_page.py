"""The world viewer in a real Chromium against the demo world: every demo NPC on a real worker on
the dev server, the demo's visitors and game stand-in, and the API under uvicorn."""

from __future__ import annotations

import asyncio
import io
import json
import re
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from rich.console import Console
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from aiworld.config import LlmSettings, ProviderSettings
from aiworld.memory.store import MemoryStore
from aiworld.models import GameEvent, GameEventKind, PlayerRef
from aiworld.ops.demo import DemoGame, DemoPace
from aiworld.ops.dev import load_world_into
from aiworld.store.action_queue import ActionQueue
from aiworld.temporal import npc_workflow_id
from aiworld.world.cycle import CycleOutcome, CycleWrite
from aiworld.world.definition import load_world
from aiworld.world.feed import WorldFeed
from aiworld.world.quests import Quest
from aiworld.world.store import WorldStore
from api.app import create_app
from tests.api.browser import Browser, require_chromium
from tests.api.conftest import API_KEYS, api_settings
from tests.conftest import _running_life

pytestmark = pytest.mark.dev_server

# Busy enough that the page has things to show, light enough for a loaded 2-core machine.
DEMO_PACE = DemoPace(
    visit_interval=(1.0, 2.0),
    greeting_pause=(0.5, 1.0),
    visit_length=(3.0, 8.0),
    news_interval=(3600, 3600),
    talk_chance=0.5,
    game_tick=0.2,
)
# The promise: a new line shows within 5 s of the NPC saying it.
SAY_SHOWN_SECONDS = 5
LOAD_SECONDS = 60
# The LLM panel's spend comes from the configured prices.
PRICED_LLM = LlmSettings(
    providers={"azure": ProviderSettings(kind="azure_openai", input_price_per_1k=0.0025, output_price_per_1k=0.01)}
)


@dataclass
class DemoWorld:
    app: Any
    client: Any
    store: Any
    keys: Any
    port: int = 0
    _server: uvicorn.Server | None = None
    _serving: asyncio.Task | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start_api(self) -> None:
        """The API under uvicorn, on the same port each time (a restart, as an operator's)."""
        listening = socket.socket()
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind(("127.0.0.1", self.port))
        listening.listen()
        self.port = listening.getsockname()[1]
        self._server = uvicorn.Server(
            uvicorn.Config(self.app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
        )
        self._serving = asyncio.create_task(self._server.serve(sockets=[listening]))
        async with asyncio.timeout(30):
            while not self._server.started:
                await asyncio.sleep(0.01)

    async def stop_api(self) -> None:
        assert self._server is not None and self._serving is not None
        self._server.should_exit = True
        await self._serving

    async def give(self, npc_id: str, player_name: str) -> None:
        """A gift: the offline policy always thanks the giver aloud (a `say`)."""
        player = PlayerRef(char_id=150000 + uuid.uuid4().int % 9999, name=player_name, level=20)
        event = GameEvent(
            event_id=f"gift-{uuid.uuid4().hex}", kind=GameEventKind.ITEM_RECEIVED, player=player, item_id=512, amount=1
        )
        await self.client.get_workflow_handle(npc_workflow_id(npc_id)).signal("game_event", event)

    async def feed_entry(self, predicate: Callable[[dict], bool], timeout: float = 60) -> dict:
        feed = WorldFeed(self.store, self.keys)
        async with asyncio.timeout(timeout):
            while True:
                for item in await feed.latest(200):
                    if predicate(item.entry):
                        return item.entry
                await asyncio.sleep(0.1)

    async def said_to(self, npc_id: str, giver: str) -> dict:
        return await self.feed_entry(
            lambda e: e.get("npc_id") == npc_id and e.get("kind") == "say" and giver in e.get("text", "")
        )


@pytest_asyncio.fixture(loop_scope="session")
async def demo_world(dev_env, task_queue, redis_client, keys):
    require_chromium()
    world = load_world()
    settings = api_settings(keys, task_queue).model_copy(update={"llm": PRICED_LLM})
    async for life in _running_life(dev_env.client, task_queue, redis_client, keys, visibility=True):
        await load_world_into(dev_env.client, settings, world, redis_client)
        life.started.update(npc_workflow_id(npc.npc_id) for npc in world.npcs)
        game = DemoGame(
            dev_env.client,
            ActionQueue(redis_client, keys),
            MemoryStore(redis_client, keys),
            world,
            Console(file=io.StringIO()),
            DEMO_PACE,
        )
        stop = asyncio.Event()
        running = asyncio.create_task(game.run(stop))
        demo = DemoWorld(
            create_app(settings, client=dev_env.client, store=redis_client), dev_env.client, redis_client, keys
        )
        try:
            await demo.start_api()
            yield demo
            await demo.stop_api()
        finally:
            stop.set()
            await running


@pytest_asyncio.fixture(loop_scope="session")
async def browser():
    require_chromium()
    opened = await asyncio.to_thread(Browser)
    try:
        yield opened
    finally:
        await asyncio.to_thread(opened.quit)


def wait(browser: Browser, seconds: float, condition: Callable[[Any], Any]) -> Any:
    return WebDriverWait(browser.driver, seconds, poll_frequency=0.1).until(condition)


def log_in(browser: Browser, url: str, key: str) -> None:
    browser.driver.get(f"{url}/viewer")
    field = wait(browser, LOAD_SECONDS, lambda d: d.find_element(By.ID, "api-key"))
    wait(browser, LOAD_SECONDS, lambda d: field.is_displayed())
    field.send_keys(key)
    browser.driver.find_element(By.CSS_SELECTOR, "#login-form button").click()


def npcs_drawn(driver) -> int:
    return len(driver.find_elements(By.CSS_SELECTOR, "#maps circle.npc"))


def live(driver) -> bool:
    return driver.find_element(By.ID, "live").text == "live"


async def test_the_page_draws_every_npc_of_the_demo_world_and_shows_a_new_say_live(demo_world, browser):
    def load() -> int:
        log_in(browser, demo_world.url, API_KEYS[0])
        wait(browser, LOAD_SECONDS, lambda d: npcs_drawn(d) >= 20 and live(d))
        return npcs_drawn(browser.driver)

    drawn = await asyncio.to_thread(load)
    assert drawn >= 20
    maps = await asyncio.to_thread(
        lambda: {e.get_attribute("data-map") for e in browser.driver.find_elements(By.CSS_SELECTOR, "article.map")}
    )
    assert maps == {"prontera", "prt_fild08", "izlude"}
    await asyncio.to_thread(browser.screenshot, "world")

    giver = f"Zed{uuid.uuid4().hex[:4]}"
    await demo_world.give("lina_baker", giver)
    said = await demo_world.said_to("lina_baker", giver)

    def shown() -> str:
        selector = f'#speech-log li[data-action-id="{said["id"]}"]'
        wait(browser, SAY_SHOWN_SECONDS, lambda d: d.find_elements(By.CSS_SELECTOR, selector))
        bubble = browser.driver.find_element(By.CSS_SELECTOR, f'.bubble[data-action-id="{said["id"]}"]')
        return bubble.text

    assert giver in await asyncio.to_thread(shown)
    await asyncio.to_thread(browser.screenshot, "say")


async def test_clicking_an_npc_opens_its_card_with_memories_decisions_and_its_workflow(demo_world, browser):
    giver = f"Yan{uuid.uuid4().hex[:4]}"
    await demo_world.give("lina_baker", giver)
    await demo_world.feed_entry(lambda e: e.get("type") == "npc" and e.get("npc_id") == "lina_baker")

    def open_card() -> dict[str, Any]:
        log_in(browser, demo_world.url, API_KEYS[0])
        wait(browser, LOAD_SECONDS, lambda d: npcs_drawn(d) >= 20)
        browser.driver.find_element(By.CSS_SELECTOR, 'circle.npc[data-npc="lina_baker"]').click()
        card = wait(browser, LOAD_SECONDS, lambda d: d.find_element(By.ID, "card"))
        wait(browser, LOAD_SECONDS, lambda d: card.is_displayed() and d.find_elements(By.CSS_SELECTOR, "#card li"))
        return {
            "text": card.text,
            "memories": [li.text for li in card.find_elements(By.CSS_SELECTOR, "ol.memories li")],
            "link": card.find_element(By.CSS_SELECTOR, "a").get_attribute("href"),
        }

    card = await asyncio.to_thread(open_card)
    await asyncio.to_thread(browser.screenshot, "npc-card")
    assert "Lina the Baker" in card["text"]
    assert any(giver in memory for memory in card["memories"]), card["memories"]
    assert "last decisions" in card["text"].lower() and "offline" in card["text"]
    assert card["link"].endswith("/workflows/npc-lina_baker")


async def test_missing_or_bad_credentials_show_the_login_and_no_data(demo_world, browser):
    def attempt() -> dict[str, Any]:
        driver = browser.driver
        driver.get(f"{demo_world.url}/viewer")
        wait(browser, LOAD_SECONDS, lambda d: d.find_element(By.ID, "login").is_displayed())
        without = {"app": driver.find_element(By.ID, "app").is_displayed(), "npcs": npcs_drawn(driver)}
        log_in(browser, demo_world.url, "not-a-key")
        error = wait(browser, LOAD_SECONDS, lambda d: d.find_element(By.ID, "login-error").text)
        browser.screenshot("bad-key")
        # A forged or expired token in the tab's storage: the API refuses it and the page asks again.
        driver.execute_script("sessionStorage.setItem('aiworld.viewer.token', 'forged.token.value')")
        driver.get(f"{demo_world.url}/viewer")
        forged = wait(browser, LOAD_SECONDS, lambda d: d.find_element(By.ID, "login-error").text)
        return {
            "without": without,
            "error": error,
            "forged": forged,
            "after": {"app": driver.find_element(By.ID, "app").is_displayed(), "npcs": npcs_drawn(driver)},
            "url": driver.current_url,
        }

    seen = await asyncio.to_thread(attempt)
    assert seen["without"] == {"app": False, "npcs": 0}
    assert seen["error"] == "That key is not accepted."
    assert "invalid token" in seen["forged"]
    assert seen["after"] == {"app": False, "npcs": 0}
    assert "key" not in seen["url"] and "token" not in seen["url"]

    async with httpx.AsyncClient(base_url=demo_world.url) as http:
        for path in ("/ai/viewer/world", "/ai/viewer/panels", "/ai/viewer/npc/lina_baker", "/ai/viewer/stream"):
            assert (await http.get(path)).status_code == 401, path
            assert (await http.get(path, headers={"Authorization": "Bearer forged"})).status_code == 401, path


async def test_the_token_stays_out_of_urls_and_the_stream_carries_it_as_a_header(demo_world, browser):
    def requests_made() -> list[dict]:
        log_in(browser, demo_world.url, API_KEYS[0])
        wait(browser, LOAD_SECONDS, lambda d: live(d))
        entries = browser.driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => ({name: e.name, type: e.initiatorType}))"
        )
        token = browser.driver.execute_script("return sessionStorage.getItem('aiworld.viewer.token')")
        return [{"token": token}, *entries]

    token, *entries = await asyncio.to_thread(requests_made)
    assert token["token"]
    async with httpx.AsyncClient(base_url=demo_world.url, headers={"X-API-Key": API_KEYS[0]}) as http:
        scraped = (await http.get("/metrics")).text
    assert 'route="/ai/viewer/stream",status="200"' in scraped, "the page's stream was let in, with its header"
    assert not [entry for entry in entries if token["token"] in entry["name"] or API_KEYS[0] in entry["name"]]
    assert all(entry["name"].startswith(demo_world.url) for entry in entries), "nothing loads from elsewhere"


async def test_the_stream_sends_entries_after_the_given_id_and_refuses_a_malformed_one(demo_world):
    headers = {"X-API-Key": API_KEYS[0]}
    feed = WorldFeed(demo_world.store, demo_world.keys)
    giver = f"Xan{uuid.uuid4().hex[:4]}"
    after = await feed.last_id()
    await demo_world.give("kafra_elin", giver)
    async with httpx.AsyncClient(base_url=demo_world.url, headers=headers, timeout=60) as http:
        refused = await http.get("/ai/viewer/stream", params={"after": "1; DROP"})
        assert refused.status_code == 422 and refused.json()["detail"].startswith("after:")
        async with http.stream("GET", "/ai/viewer/stream", params={"after": after}) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            async with asyncio.timeout(60):
                async for line in stream.aiter_lines():
                    entry = json.loads(line[6:]) if line.startswith("data: ") else {}
                    if entry.get("kind") == "say" and giver in entry["text"]:
                        break
    assert entry["npc_id"] == "kafra_elin" and entry["kind"] == "say"
    assert stream_order(entry["stream_id"]) > stream_order(after)


def stream_order(stream_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = stream_id.partition("-")
    return int(milliseconds), int(sequence)


def quest_cycle() -> CycleOutcome:
    """A quest cycle's write: one quest offered, one completed (listed open by mistake: not shown)."""
    now = time.time()

    def quest(quest_id: str, title: str, status: str) -> dict[str, str]:
        return Quest(
            quest_id=quest_id,
            kind="fetch",
            status=status,
            title=title,
            giver="lina_baker",
            giver_name="Lina the Baker",
            faction="merchants_guild",
            map="prontera",
            target=2613,
            needed=1,
            slot=64500,
            cause="a lost ring",
            created_at=now,
            expires_at=now + 3600,
        ).to_hash()

    return CycleOutcome(
        cycle_id="viewer-quests-1",
        system="quests",
        at=datetime.now(UTC),
        cursor="",
        write=CycleWrite(
            quests={"q1": quest("q1", "Find the lost ring", "offered"), "q2": quest("q2", "Done already", "completed")},
            open_quests={"q1": now + 3600, "q2": now + 3600},
        ),
    )


def text_of(browser: Browser, element_id: str) -> str:
    return browser.driver.find_element(By.ID, element_id).text


async def test_world_and_llm_panels_say_no_data_yet_then_draw_the_world_systems_state(demo_world, browser, keys):
    def panels() -> dict[str, str]:
        log_in(browser, demo_world.url, API_KEYS[0])
        wait(browser, LOAD_SECONDS, lambda d: text_of(browser, "quests"))
        return {part: text_of(browser, part) for part in ("economy", "politics", "quests", "llm-totals", "llm-budget")}

    empty = await asyncio.to_thread(panels)
    assert "no price history yet" in empty["economy"] and "no prices yet" in empty["economy"]
    assert "no faction relations yet" in empty["politics"]
    assert "no open quests yet" in empty["quests"]
    assert "no LLM calls yet" in empty["llm-totals"] and "within budget" in empty["llm-budget"]
    # The governor's ladder, tier by tier, and its rungs over time as the page samples them.
    assert re.search(r"routine\s+normal\s+0%", empty["llm-budget"]), empty["llm-budget"]
    assert "rung over time:" in empty["llm-budget"] and "normal" in empty["llm-budget"]

    store = demo_world.store
    await store.hset(keys.world("economy"), mapping={"price:512": "55", "price:519": "42"})
    for price in ("40", "48", "55"):
        await store.xadd(keys.world_history("economy"), {"price:512": price, "why": "demand"})
    await store.xadd(keys.world_history("economy"), {"json": '{"price:519": 42, "reason": "harvest"}'})
    await store.hset(keys.world("politics"), mapping={"relation:merchants_guild:prontera_guard": "40"})
    await store.hset(
        keys.world("environment"), mapping={"season": "winter", "day_phase": "dusk", "weather:izlude": "rain"}
    )
    await WorldStore(store, keys).apply(quest_cycle(), "", 100)
    await store.hset(
        keys.llm_counter(),
        mapping={
            "azure.routine.calls": "4",
            "azure.routine.tokens_in": "1000000",
            "azure.routine.tokens_out": "100000",
        },
    )

    def drawn() -> dict[str, Any]:
        browser.driver.refresh()
        wait(browser, LOAD_SECONDS, lambda d: "Find the lost ring" in text_of(browser, "quests"))
        browser.screenshot("world-panels")
        driver = browser.driver
        return {
            "lines": len(driver.find_elements(By.CSS_SELECTOR, '#economy svg[data-chart="price over time"] polyline')),
            **{part: text_of(browser, part) for part in ("economy", "politics", "environment", "quests", "llm-totals")},
            "izlude": driver.find_element(By.CSS_SELECTOR, 'article.map[data-map="izlude"] h2').text,
        }

    seen = await asyncio.to_thread(drawn)
    assert seen["lines"] == 2, "one price line per item, from the history stream"
    assert "item 512" in seen["economy"] and "55 z" in seen["economy"]
    assert "merchants_guild" in seen["politics"] and "40" in seen["politics"]
    assert "winter" in seen["environment"] and "dusk" in seen["environment"] and "rain" in seen["izlude"]
    assert "Find the lost ring" in seen["quests"] and "Done already" not in seen["quests"]
    assert "4" in seen["llm-totals"] and "spend 3.5000" in seen["llm-totals"], seen["llm-totals"]


async def test_the_page_reconnects_by_itself_after_the_api_restarts_and_misses_nothing(demo_world, browser):
    def opened() -> None:
        log_in(browser, demo_world.url, API_KEYS[0])
        wait(browser, LOAD_SECONDS, live)

    await asyncio.to_thread(opened)
    await demo_world.stop_api()
    await asyncio.to_thread(
        lambda: wait(browser, LOAD_SECONDS, lambda d: text_of(browser, "live").startswith("reconnecting"))
    )
    giver = f"Wes{uuid.uuid4().hex[:4]}"
    await demo_world.give("lina_baker", giver)
    said = await demo_world.said_to("lina_baker", giver)  # said while no API was there
    await demo_world.start_api()

    def caught_up() -> None:
        wait(
            browser,
            LOAD_SECONDS,
            lambda d: d.find_elements(By.CSS_SELECTOR, f'#speech-log li[data-action-id="{said["id"]}"]'),
        )
        wait(browser, LOAD_SECONDS, live)

    await asyncio.to_thread(caught_up)


def test_without_chromium_the_browser_tests_are_skipped_loudly(tmp_path):
    with pytest.warns(UserWarning, match="browser tests skipped"), pytest.raises(pytest.skip.Exception) as skipped:
        require_chromium(tmp_path / "chromium", tmp_path / "chromedriver")
    assert "apt-get install chromium chromium-driver" in str(skipped.value)
