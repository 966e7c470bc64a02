"""Starting the event coordinator from outside (the API, the world cycles, the benchmark): one
home for the workflow id, the task queue and what the Temporal UI shows of it."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from aiworld.world.news import WorldNews
from workflows.world_broadcast import BROADCAST_WORKFLOW_TYPE, broadcast_workflow_id


async def start_broadcast(client: Client, news: WorldNews, task_queue: str) -> bool:
    """Fan `news` out unless it is being or has been fanned out. False when a fan-out of this news
    id has ended already; one still running is left to run: a retried request starts nothing twice."""
    try:
        await client.start_workflow(
            BROADCAST_WORKFLOW_TYPE,
            news,
            id=broadcast_workflow_id(news.news_id),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=f"{news.source.value} news to the {news.scope.kind.value} scope: {news.text[:80]}",
        )
    except WorkflowAlreadyStartedError:
        return False
    return True
