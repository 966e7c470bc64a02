"""The world systems' cycles (DESIGN.md §4b): one short workflow per run of a Temporal Schedule.

Every cycle reads its system's state and inbox, decides the next state with a pure model (here, in
workflow code), has the changes worded (LLM tier `world` or the offline writer), writes it all in
one step guarded by its cycle id, then queues its game actions and tells the NPCs concerned through
the event coordinator's `WorldBroadcastWorkflow`. The cycle id is the workflow id (the schedule
names each run after its time), so a retried or reset cycle finds its own write and repeats only
the follow-ups, which are idempotent; a cycle that fails before its write leaves the state whole.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from activities.world_activities import (
        ApplyRequest,
        ReadRequest,
        WordsRequest,
        WorldActivities,
    )
    from aiworld.world.cycle import CycleInput
    from aiworld.world.news import WorldNews
    from aiworld.world.plans import PLANS, news_of

BROADCAST_WORKFLOW = "WorldBroadcastWorkflow"  # the event coordinator's, by name

READ_TIMEOUT = timedelta(seconds=30)
WORDS_TIMEOUT = timedelta(seconds=90)
APPLY_TIMEOUT = timedelta(seconds=15)
CARRY_OUT_TIMEOUT = timedelta(seconds=30)
# A store that is down for a while fails the cycle; the schedule's next run tries again, and the
# state stays as the last good cycle left it.
STORE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=5,
    non_retryable_error_types=["WorldStateDamaged", "CursorMoved"],
)
# The router walks its own fallback chain down to the offline writer; a retry only helps when
# the worker itself failed.
WORDS_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=3)


async def run_cycle(system: str, cycle: CycleInput) -> str:
    info = workflow.info()
    cycle_id = cycle.cycle_id or info.workflow_id
    params = cycle.params
    workflow.set_current_details(f"reading the {system} state and inbox")
    read = await workflow.execute_activity_method(
        WorldActivities.read_world_cycle,
        ReadRequest(system=system, cycle_id=cycle_id, inbox_batch=params.inbox_batch, weather_maps=params.weather_maps),
        start_to_close_timeout=READ_TIMEOUT,
        retry_policy=STORE_RETRY,
    )
    if read.applied is not None:
        outcome = read.applied
        workflow.set_current_details(f"already written; repeating its follow-ups: {outcome.summary()}")
    else:
        outcome = PLANS[system](read, workflow.now(), params)
        if outcome.changes:
            workflow.set_current_details(f"wording {len(outcome.changes)} changes")
            worded = await workflow.execute_activity_method(
                WorldActivities.word_world_changes,
                WordsRequest(system=system, changes=outcome.changes),
                start_to_close_timeout=WORDS_TIMEOUT,
                retry_policy=WORDS_RETRY,
            )
            outcome.changes, outcome.words_by = worded.changes, worded.words_by
        outcome.news = news_of(outcome, params)
        await workflow.execute_activity_method(
            WorldActivities.apply_world_cycle,
            ApplyRequest(outcome=outcome, expected_cursor=read.cursor, history_cap=params.history_max_entries),
            start_to_close_timeout=APPLY_TIMEOUT,
            retry_policy=STORE_RETRY,
        )
    if outcome.actions or outcome.relationships:
        await workflow.execute_activity_method(
            WorldActivities.carry_out_world_cycle,
            outcome,
            start_to_close_timeout=CARRY_OUT_TIMEOUT,
            retry_policy=STORE_RETRY,
        )
    await asyncio.gather(*(_broadcast(news) for news in outcome.news))
    summary = outcome.summary()
    workflow.set_current_details(summary)
    return summary


async def _broadcast(news: WorldNews) -> None:
    """Start the coordinator's fan-out once per news id; it outlives this short cycle."""
    try:
        await workflow.start_child_workflow(
            BROADCAST_WORKFLOW,
            news,
            id=f"broadcast-{news.news_id}",
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=f"{news.source.value} news: {news.text[:80]}",
        )
    except WorkflowAlreadyStartedError:
        pass  # told before, by this cycle's earlier run


@workflow.defn
class EconomyCycleWorkflow:
    """Prices, supply and demand per item from trades, sales and events; reprices NPC shops."""

    @workflow.run
    async def run(self, cycle: CycleInput) -> str:
        return await run_cycle("economy", cycle)


@workflow.defn
class PoliticsCycleWorkflow:
    """Faction relations, conflicts, alliances, territory and players' standing."""

    @workflow.run
    async def run(self, cycle: CycleInput) -> str:
        return await run_cycle("politics", cycle)


@workflow.defn
class EnvironmentCycleWorkflow:
    """The game calendar, each map's weather and the natural events they bring."""

    @workflow.run
    async def run(self, cycle: CycleInput) -> str:
        return await run_cycle("environment", cycle)


@workflow.defn
class QuestCycleWorkflow:
    """Quests from shortages and conflicts; their progress, rewards and expiry."""

    @workflow.run
    async def run(self, cycle: CycleInput) -> str:
        return await run_cycle("quests", cycle)


CYCLE_WORKFLOWS = {
    "economy": EconomyCycleWorkflow,
    "politics": PoliticsCycleWorkflow,
    "environment": EnvironmentCycleWorkflow,
    "quests": QuestCycleWorkflow,
}
