"""Activities of the event coordinator: find a scope's recipients, and tell each of them.

Both are safe to run twice. Resolving reads the directory; delivering signals `game_event` with
the recipient's own event id (`{news_id}:{npc_id}`), which the NPC drops when it has it already.
Delivery heartbeats how far it got, so an attempt after a killed worker resumes there.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from aiworld.config import CoordinatorSettings
from aiworld.ops.metrics import WorkerMetrics
from aiworld.temporal import npc_workflow_id
from aiworld.world.directory import NpcDirectory
from aiworld.world.news import Scope, WorldNews
from aiworld.world.recipients import RecipientPage, recipients_page


class RecipientsRequest(BaseModel):
    scope: Scope
    after: str = ""


class DeliveryRequest(BaseModel):
    news: WorldNews
    npc_ids: list[str]


class DeliveryProgress(BaseModel):
    """Heartbeat details: recipients [0, next_index) of the request are told."""

    next_index: int = 0
    delivered: int = 0
    not_living: list[str] = Field(default_factory=list)


class DeliveryReport(BaseModel):
    delivered: int
    not_living: list[str]
    # Where this attempt began: above 0 when an earlier attempt (a killed worker) got that far.
    resumed_from: int
    attempt: int


class BroadcastActivities:
    def __init__(
        self,
        client: Client,
        directory: NpcDirectory,
        settings: CoordinatorSettings,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._client = client
        self._directory = directory
        self._settings = settings
        self._metrics = metrics or WorkerMetrics()

    @activity.defn
    async def find_recipients(self, request: RecipientsRequest) -> RecipientPage:
        return await recipients_page(self._directory, request.scope, request.after, self._settings.page_size)

    @activity.defn
    async def deliver_news(self, request: DeliveryRequest) -> DeliveryReport:
        info = activity.info()
        progress = DeliveryProgress()
        if info.heartbeat_details:
            progress = DeliveryProgress.model_validate(info.heartbeat_details[0])
        resumed_from = progress.next_index
        step = self._settings.max_concurrent_signals
        ids = request.npc_ids
        while progress.next_index < len(ids):
            chunk = ids[progress.next_index : progress.next_index + step]
            outcomes = await asyncio.gather(*(self._tell(request.news, npc_id) for npc_id in chunk))
            progress.delivered += sum(outcomes)
            progress.not_living.extend(npc_id for npc_id, told in zip(chunk, outcomes, strict=True) if not told)
            progress.next_index += len(chunk)
            self._metrics.told(sum(outcomes), len(chunk) - sum(outcomes))
            activity.heartbeat(progress.model_dump())
        return DeliveryReport(
            delivered=progress.delivered,
            not_living=progress.not_living,
            resumed_from=resumed_from,
            attempt=info.attempt,
        )

    async def _tell(self, news: WorldNews, npc_id: str) -> bool:
        """Signal one NPC; False when it does not live (retired, never started). Signal only, never
        signal-with-start: news must not bring a retired NPC back to life."""
        try:
            await self._client.get_workflow_handle(npc_workflow_id(npc_id)).signal("game_event", news.event_for(npc_id))
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True

    def all(self) -> list:
        return [self.find_recipients, self.deliver_news]
