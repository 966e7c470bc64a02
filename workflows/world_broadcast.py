"""WorldBroadcastWorkflow: the event coordinator. One piece of news, every NPC of its scope told once.

Started by the world cycles and the API with id `broadcast-{news_id}`, so the same news is never
fanned out by two workflows at once. Recipients are read from the NPC directory a page at a time;
each page is delivered by one activity that signals at most `max_concurrent_signals` NPCs at once
and heartbeats how far it got: a worker killed mid-page costs a retry that resumes there, and
even a page delivered twice tells nobody twice, because each recipient's event id is its own.
A very large scope continues as new between pages, carrying where it was.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.broadcast_activities import (
        BroadcastActivities,
        DeliveryRequest,
        RecipientsRequest,
    )
    from aiworld.world.news import WorldNews

BROADCAST_WORKFLOW_TYPE = "WorldBroadcastWorkflow"
FIND_TIMEOUT = timedelta(seconds=10)
# A page of deliveries may take minutes on a busy server; the heartbeat says much sooner that
# the worker running it is gone, and the retry starts where its last heartbeat said.
DELIVERY_TIMEOUT = timedelta(minutes=10)
DELIVERY_HEARTBEAT_TIMEOUT = timedelta(seconds=10)
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
# Each page costs about a dozen history events: continue as new well before the history grows large.
PAGES_PER_RUN = 100


def broadcast_workflow_id(news_id: str) -> str:
    return f"broadcast-{news_id}"


class BroadcastProgress(BaseModel):
    """What a run carries to the next through continue-as-new."""

    after: str = ""
    pages: int = 0
    delivered: int = 0
    not_living: int = 0
    # Deliveries that resumed after a failed attempt, and from which recipient index.
    resumed: list[int] = Field(default_factory=list)
    runs: int = 1


class BroadcastInput(WorldNews):
    """The news (what the world cycles and the API send: a plain WorldNews decodes as this), and
    where an earlier run of the same fan-out got to."""

    progress: BroadcastProgress | None = None
    # Tests lower it to see several runs.
    pages_per_run: int = Field(default=PAGES_PER_RUN, ge=1)

    def news(self) -> WorldNews:
        return WorldNews.model_validate(self.model_dump(exclude={"progress", "pages_per_run"}))


class BroadcastReport(BaseModel):
    news_id: str
    delivered: int
    not_living: int
    pages: int
    resumed: list[int]
    runs: int


@workflow.defn(name=BROADCAST_WORKFLOW_TYPE)
class WorldBroadcastWorkflow:
    @workflow.init
    def __init__(self, given: BroadcastInput) -> None:
        self._progress = given.progress or BroadcastProgress()

    @workflow.run
    async def run(self, given: BroadcastInput) -> BroadcastReport:
        news = given.news()
        done = self._progress
        self._describe(news)
        pages_this_run = 0
        while True:
            page = await workflow.execute_activity_method(
                BroadcastActivities.find_recipients,
                RecipientsRequest(scope=news.scope, after=done.after),
                start_to_close_timeout=FIND_TIMEOUT,
                retry_policy=RETRY,
            )
            if page.npc_ids:
                report = await workflow.execute_activity_method(
                    BroadcastActivities.deliver_news,
                    DeliveryRequest(news=news, npc_ids=page.npc_ids),
                    start_to_close_timeout=DELIVERY_TIMEOUT,
                    heartbeat_timeout=DELIVERY_HEARTBEAT_TIMEOUT,
                    retry_policy=RETRY,
                )
                done.delivered += report.delivered
                done.not_living += len(report.not_living)
                if report.attempt > 1:
                    done.resumed.append(report.resumed_from)
            done.pages += 1
            pages_this_run += 1
            self._describe(news)
            if page.next_after is None:
                return BroadcastReport(
                    news_id=news.news_id,
                    delivered=done.delivered,
                    not_living=done.not_living,
                    pages=done.pages,
                    resumed=done.resumed,
                    runs=done.runs,
                )
            done.after = page.next_after
            if pages_this_run >= given.pages_per_run or workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(
                    given.model_copy(update={"progress": done.model_copy(update={"runs": done.runs + 1})})
                )

    def _describe(self, news: WorldNews) -> None:
        done = self._progress
        workflow.set_current_details(
            f"**{news.source.value}** news to {news.scope.kind.value} scope: {news.text}\n\n"
            f"{done.delivered} NPC(s) told, {done.not_living} not living, {done.pages} page(s)"
            + (f", resumed after a failed attempt at {done.resumed}" if done.resumed else "")
        )
