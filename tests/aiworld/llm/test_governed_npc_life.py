"""An NPC life on a real worker whose router is governed by a budget: the rung comes back with the
decision, shows in the decision record, and stretches (then restores) the NPC's cadence."""

from __future__ import annotations

from datetime import timedelta

from temporalio.api.enums.v1 import EventType

from aiworld.config import BudgetLimits, BudgetSettings, LlmSettings, Settings
from aiworld.llm import build_router
from aiworld.models import GameEvent, PlayerRef
from aiworld.ops.worker import build_worker
from tests.aiworld.llm.conftest import provider_settings
from tests.aiworld.llm.test_governor import TOKENS_PER_HOUR, Clock, spend_to
from tests.conftest import NpcLife, demo_profile, replay_every_run

ARIA = PlayerRef(char_id=150001, name="Aria", level=34)
# Importance 2 with a player near: 30 - 25 * 1/9 seconds between routine steps.
USUAL_CADENCE = timedelta(seconds=27.2)


async def last_timer(handle) -> timedelta:
    history = await handle.fetch_history()
    started = [event for event in history.events if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED]
    return started[-1].timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()


async def test_the_rung_reaches_the_npc_with_its_decision_and_is_undone_when_spend_recovers(
    time_skipping_env, task_queue, redis_client, keys, provider_server
):
    clock = Clock()
    settings = Settings(
        llm=LlmSettings(
            default_provider="openai",
            providers={"openai": provider_settings(provider_server)["openai"]},
            budget=BudgetSettings(overall=BudgetLimits(tokens_per_hour=TOKENS_PER_HOUR), cadence_stretch=4),
        )
    )
    router = build_router(settings, redis_client, keys, clock=clock)
    life = NpcLife(time_skipping_env.client, task_queue, keys)
    try:
        async with build_worker(time_skipping_env.client, task_queue, redis_client, keys, router):
            await spend_to(router.governor, 0.55)
            handle = await life.start(demo_profile("lina_baker", importance=2))
            await handle.signal("game_event", GameEvent(event_id="aria-near", kind="player_nearby", player=ARIA))
            decisions = await life.wait_for_decisions(handle, lambda ds: any(d.event_ids == ["aria-near"] for d in ds))
            stretched = next(d for d in decisions if d.event_ids == ["aria-near"])
            assert (stretched.usage.provider, stretched.usage.budget_rung) == ("openai", "stretch_cadence")
            assert stretched.usage.cadence_stretch == 4
            await life.wait_for(handle, lambda s: s.decision_sequence == 1 and not s.pending_events)
            assert await last_timer(handle) == USUAL_CADENCE * 4

            clock.now += 3600  # a new hour: the budget recovers, and the next decision says so
            gift = GameEvent(event_id="aria-gift", kind="item_received", player=ARIA, item_id=512, amount=1)
            await handle.signal("game_event", gift)
            decisions = await life.wait_for_decisions(handle, lambda ds: any(d.event_ids == ["aria-gift"] for d in ds))
            recovered = next(d for d in decisions if d.event_ids == ["aria-gift"])
            assert (recovered.usage.budget_rung, recovered.usage.cadence_stretch) == ("normal", 1.0)
            await life.wait_for(handle, lambda s: s.decision_sequence == 2 and not s.pending_events)
            assert await last_timer(handle) == USUAL_CADENCE
            await handle.terminate("test finished")
    finally:
        await router.aclose()
    await replay_every_run(time_skipping_env.client, life.started)
