"""Chaos, part 2: the demo world on an LLM provider that fails 30% of its calls and answers hostile
content in many of the rest.

The demo's visitors greet and talk to its 22 NPCs and its game stand-in executes their actions,
while the provider (OpenAI's protocol, through the official SDK) answers 500, 429, stalls, an HTML
page or a cut-off body, or else a million zeny, gifts to absent characters, client tags,
off-map walks and unknown kinds. Afterwards: no NPC failed or is stuck on a failing workflow task,
no hostile value was ever queued, and every player line was answered.
"""

from __future__ import annotations

import asyncio
import io
import json

import pytest
import pytest_asyncio
from rich.console import Console
from temporalio.client import WorkflowExecutionStatus

from aiworld.config import LlmSettings, ProviderSettings, Settings
from aiworld.llm import build_router
from aiworld.memory.store import MemoryStore
from aiworld.models import QueuedAction
from aiworld.npc.control import ensure_npc_started
from aiworld.npc.rules import DEFAULT_LIMITS
from aiworld.ops.demo import DemoGame, DemoPace
from aiworld.ops.worker import build_worker
from aiworld.store.action_queue import ActionQueue
from aiworld.temporal import npc_workflow_id
from aiworld.world.definition import load_world
from tests.aiworld.llm.provider_server import FAILURES, HOSTILE, Chaos, ProviderServer, serve
from tests.conftest import end_lives

TALKS_WANTED = 40
PACE = DemoPace(
    visit_interval=(0.1, 0.3),
    greeting_pause=(0.2, 0.5),
    visit_length=(0.3, 0.8),
    news_interval=(2, 4),
    talk_chance=1.0,
    game_tick=0.2,
    restart_delay=0.2,
)

pytestmark = pytest.mark.chaos


@pytest_asyncio.fixture(loop_scope="session")
async def hostile_provider():
    server = ProviderServer(chaos=Chaos(failure_rate=0.3, hostile_rate=0.5))
    running, task = await serve(server)
    yield server
    running.should_exit = True
    await task


def hostile_router(server: ProviderServer, store, keys):
    provider = ProviderSettings(
        kind="openai", endpoint=f"{server.url}/v1", api_key="k", model="gpt-test", timeout_seconds=1.0
    )
    settings = Settings(llm=LlmSettings(default_provider="openai", providers={"openai": provider}))
    return build_router(settings, store, keys)


def problems_of(action: QueuedAction, world_area, visitors: set[int]) -> list[str]:
    """What would be hostile in the game: anything the rules exist to stop."""
    found = []
    payload = action.action.model_dump()
    if action.action.kind not in DEFAULT_LIMITS.allowed_kinds | {"reply"}:
        found.append(f"kind {action.action.kind}")
    for text in [payload.get("text") or "", *(payload.get("options") or [])]:
        if "<" in text or ">" in text:
            found.append(f"client tag in {text!r}")
    if action.action.kind == "give_zeny" and payload["amount"] > DEFAULT_LIMITS.max_zeny_gift:
        found.append(f"{payload['amount']} zeny")
    if action.action.kind in {"give_item", "give_zeny", "start_quest"} and payload["char_id"] not in visitors:
        found.append(f"gift to absent char {payload['char_id']}")
    if action.action.kind in {"walk_to", "move"} and not world_area[action.npc_id].contains(payload["x"], payload["y"]):
        found.append(f"walk off the area to ({payload['x']},{payload['y']})")
    return found


async def test_the_demo_world_survives_a_failing_hostile_provider(
    dev_env, task_queue, redis_client, keys, hostile_provider
):
    world = load_world()
    router = hostile_router(hostile_provider, redis_client, keys)
    queue = ActionQueue(redis_client, keys)
    started = set()
    console = Console(file=io.StringIO(), width=200)
    try:
        async with build_worker(dev_env.client, task_queue, redis_client, keys, router):
            for npc in world.npcs:
                await ensure_npc_started(dev_env.client, npc, task_queue)
                started.add(npc_workflow_id(npc.npc_id))
            game = DemoGame(dev_env.client, queue, MemoryStore(redis_client, keys), world, console, PACE)
            stop = asyncio.Event()
            running = asyncio.create_task(game.run(stop))
            async with asyncio.timeout(150):
                while game.talks.total() < TALKS_WANTED or game.actions_executed < TALKS_WANTED:
                    await asyncio.sleep(0.2)
            stop.set()
            await running

            for workflow_id in sorted(started):
                described = await dev_env.client.get_workflow_handle(workflow_id).describe()
                assert described.status == WorkflowExecutionStatus.RUNNING, workflow_id
                raw = described.raw_description
                assert not raw.HasField("pending_workflow_task") or raw.pending_workflow_task.attempt <= 1, (
                    f"{workflow_id} is stuck on a failing workflow task"
                )
    finally:
        await end_lives(dev_env.client, task_queue, started, visibility=True)
        await router.aclose()

    assert game.talks["unanswered"] == 0 and game.talks["answered"] >= TALKS_WANTED
    # Every action ever queued (finished ones keep their record): none carries a hostile value.
    areas = {npc.npc_id: npc.area for npc in world.npcs}
    visitors = {visitor.char_id for visitor in world.visitors}
    queued = []
    async for key in redis_client.scan_iter(match=f"{keys.action('')}*", count=500):
        queued.append(QueuedAction.model_validate(json.loads(await redis_client.hget(key, "payload"))))
    hostile = {action.action_id: problems for action in queued if (problems := problems_of(action, areas, visitors))}
    assert hostile == {}
    dealt = hostile_provider.chaos.dealt
    assert all(dealt[fault] > 0 for fault in FAILURES + HOSTILE), f"the provider did not deal every fault: {dealt}"
    print(
        f"\nhostile provider: {sum(hostile_provider.calls.values())} calls, dealt {dict(dealt)}; "
        f"{len(queued)} actions queued, 0 hostile; {game.talks['answered']} lines answered, 0 unanswered"
    )
