"""The world systems' Temporal Schedules, created or updated to match the settings.

One schedule per system (`world-economy`, `world-politics`, `world-environment`, `world-quests`):
its interval, jitter and catch-up window come from WorldSettings; it never starts a cycle while the
last one of the same system still runs (overlap SKIP). Applying is idempotent: the worker does it
at start and `aiworld schedules apply` does it on demand; an existing schedule is updated in
place, so an operator's pause (`temporal schedule toggle --pause`) survives a worker restart.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from aiworld.config import WorldSettings
from aiworld.world.cycle import SYSTEMS, CycleInput, CycleParams

WORKFLOW_TYPES = {
    "economy": "EconomyCycleWorkflow",
    "politics": "PoliticsCycleWorkflow",
    "environment": "EnvironmentCycleWorkflow",
    "quests": "QuestCycleWorkflow",
}
SUMMARIES = {
    "economy": "Economy cycle: item prices from supply, demand, sales and events; reprices NPC shops",
    "politics": "Politics cycle: faction relations, conflicts, alliances, territory and standing",
    "environment": "Environment cycle: game calendar, seasons, weather per map, natural events",
    "quests": "Quest cycle: quests from shortages and conflicts, their progress, rewards and expiry",
}
# A cycle is short; one that runs longer than this is stuck and the next may start.
CYCLE_RUN_TIMEOUT = timedelta(minutes=10)


def schedule_id(system: str, prefix: str = "") -> str:
    return f"{prefix}world-{system}"


def interval_of(world: WorldSettings, system: str) -> timedelta:
    seconds = world.demo_interval_seconds if world.demo_speed else getattr(world, f"{system}_interval_seconds")
    return timedelta(seconds=seconds)


def cycle_params(world: WorldSettings) -> CycleParams:
    return CycleParams(
        game_day_seconds=world.demo_game_day_seconds if world.demo_speed else world.game_day_seconds,
        days_per_season=world.days_per_season,
        weather_maps=world.weather_maps,
        broadcast_min_importance=world.broadcast_min_importance,
        inbox_batch=world.inbox_batch,
        history_max_entries=world.history_max_entries,
        quest_ttl_seconds=world.quest_ttl_seconds,
        max_open_quests=world.max_open_quests,
    )


def world_schedule(system: str, world: WorldSettings, task_queue: str, prefix: str = "") -> Schedule:
    every = interval_of(world, system)
    jitter = timedelta(seconds=min(world.jitter_seconds, every.total_seconds() / 2))
    return Schedule(
        action=ScheduleActionStartWorkflow(
            WORKFLOW_TYPES[system],
            CycleInput(params=cycle_params(world)),
            id=schedule_id(system, prefix),
            task_queue=task_queue,
            run_timeout=CYCLE_RUN_TIMEOUT,
            static_summary=SUMMARIES[system],
            static_details=f"every {every}, jitter {jitter}; history in world:{system}:history",
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)], jitter=jitter),
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP,
            catchup_window=timedelta(seconds=world.catchup_window_seconds),
        ),
    )


async def apply_schedule(client: Client, sid: str, wanted: Schedule) -> str:
    """Create a schedule, or update it to `wanted` keeping its state (an operator's pause and
    note); returns "created" or "updated". Every schedule of the service is applied this way."""
    try:
        await client.create_schedule(sid, wanted)
        return "created"
    except ScheduleAlreadyRunningError:

        def keep_pause(current: ScheduleUpdateInput) -> ScheduleUpdate:
            wanted.state = current.description.schedule.state
            return ScheduleUpdate(schedule=wanted)

        await client.get_schedule_handle(sid).update(keep_pause)
        return "updated"


async def apply_schedules(client: Client, world: WorldSettings, task_queue: str, prefix: str = "") -> dict[str, str]:
    """Create each system's schedule, or update it to the settings; returns id -> "created"/"updated"."""
    return {
        schedule_id(system, prefix): await apply_schedule(
            client, schedule_id(system, prefix), world_schedule(system, world, task_queue, prefix)
        )
        for system in SYSTEMS
    }
