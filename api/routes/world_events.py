"""`POST /ai/world/event`: a game event or world news for a scope of NPCs, through the coordinator.

The bridge posts what concerns more than one NPC here (a kill in a field, a world announcement),
operators post news. The answer says how many NPCs the scope reaches now; the fan-out itself runs
in `WorldBroadcastWorkflow` (id `broadcast-{news id}`), so a retried request fans out nothing twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis
from fastapi import APIRouter, status
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, ValidationError
from temporalio.client import Client

from aiworld.config import Settings
from aiworld.models import GameEvent, GameEventKind, StrictModel, describe_invalid
from aiworld.store.keys import Keys
from aiworld.world.broadcast import start_broadcast
from aiworld.world.definition import load_world
from aiworld.world.directory import NpcDirectory
from aiworld.world.news import NEWS_ID_PATTERN, NewsSource, Scope, WorldNews
from aiworld.world.recipients import count_recipients
from aiworld.world.routing import WorldInbox, systems_for
from api.errors import invalid_field
from api.schemas import ErrorBody, ValidationErrorBody
from workflows.world_broadcast import broadcast_workflow_id

NEWS_ID = re.compile(NEWS_ID_PATTERN)


class WorldEventRequest(StrictModel):
    # None: no NPC is told, only the world systems whose inbox takes the event (a castle's new
    # owner, a player's sale, reported by the bridge); their cycles tell the NPCs what changed.
    scope: Scope | None = None
    # What each recipient hears, under its own id `{event_id}:{npc_id}`; a `world_event` carries
    # its news in `text`, `importance` and `facts`.
    event: GameEvent
    source: NewsSource = NewsSource.GAME


class WorldEventAccepted(BaseModel):
    news_id: str
    workflow_id: str | None = Field(description="the fan-out; none without a scope")
    recipients: int = Field(description="NPCs the scope reaches now")
    # False when this news id was fanned out before (a retried request): nothing is sent again.
    started: bool
    # The world systems whose inbox took the event now (none when a retried request routed it before).
    routed: list[str] = Field(default_factory=list)


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing, invalid or expired credentials"},
    413: {"model": ErrorBody, "description": "the body is larger than 64 KiB"},
    422: {
        "model": ValidationErrorBody,
        "description": "a bad scope or event, or an unknown map, faction or NPC; `field` names it",
    },
    503: {"model": ErrorBody, "description": "Temporal or the state store is down; `Retry-After`"},
}


def _news_text(event: GameEvent) -> str:
    """What the news says, for the coordinator's own record and the Temporal UI."""
    if event.text:
        return event.text
    who = event.player.name if event.player else "someone"
    return {
        GameEventKind.PLAYER_KILLED_MONSTER: f"{who} slew a monster",
        GameEventKind.PLAYER_NEARBY: f"{who} arrived",
        GameEventKind.PLAYER_LEFT: f"{who} left",
        GameEventKind.PLAYER_ATTACKED: f"{who} attacked",
        GameEventKind.ITEM_RECEIVED: f"{who} handed over items",
    }.get(event.kind, event.kind.value)


def world_event_routes(
    settings: Settings,
    keys: Keys,
    temporal: Callable[[], Client],
    store: Callable[[], redis.Redis],
    route_class: type[APIRoute],
) -> APIRouter:
    router = APIRouter(route_class=route_class)
    world = load_world(settings.world_file)
    maps_of_world = {npc.map for npc in world.npcs}
    factions_of_world = {npc.faction for npc in world.npcs}

    async def check_known(scope: Scope, directory: NpcDirectory) -> None:
        """Unknown places and parties are the caller's mistake, not an empty audience."""
        if scope.map is not None and scope.map not in maps_of_world and not await directory.count_on_map(scope.map):
            raise invalid_field(("scope", "map"), f"unknown map {scope.map!r}: no AI NPC lives there")
        if scope.faction is not None and scope.faction not in factions_of_world:
            if not await directory.count_in_faction(scope.faction):
                raise invalid_field(("scope", "faction"), f"unknown faction {scope.faction!r}")
        if scope.npc_id is not None and not await directory.is_listed(scope.npc_id):
            raise invalid_field(("scope", "npc_id"), f"unknown NPC {scope.npc_id!r}")

    @router.post(
        "/ai/world/event",
        response_model=WorldEventAccepted,
        status_code=status.HTTP_202_ACCEPTED,
        tags=["world"],
        responses=ERRORS,
    )
    async def world_event(body: WorldEventRequest) -> WorldEventAccepted:
        """Tell every NPC of a scope (npc, near, map, faction, world) of an event, each once; without
        a scope, hand it only to the world systems that take it."""
        directory = NpcDirectory(store(), keys)
        event = body.event
        if not NEWS_ID.fullmatch(event.event_id):
            raise invalid_field(
                ("event", "event_id"),
                "an event for a scope needs an id of at most 39 letters, digits, `_`, `.` or `-`: "
                "each NPC hears it as `{event_id}:{npc_id}`",
            )
        inbox = WorldInbox(store(), keys, settings.coordinator)
        if body.scope is None:
            if not systems_for(event):
                raise invalid_field(("scope",), "no world system takes this event: give a scope to tell NPCs")
            routed = await inbox.route(event)  # where it happened is in its facts, for the system to read
            return WorldEventAccepted(
                news_id=event.event_id, workflow_id=None, recipients=0, started=False, routed=routed
            )
        await check_known(body.scope, directory)
        try:
            news = WorldNews(
                news_id=event.event_id,
                source=body.source,
                scope=body.scope,
                text=_news_text(event),
                importance=event.importance,
                facts=event.facts or {},
                occurred_at=event.occurred_at,
                event=None if event.kind is GameEventKind.WORLD_EVENT else event,
            )
        except ValidationError as error:  # e.g. a text that is nothing but control characters
            raise invalid_field(("event", "text"), describe_invalid(error)) from None
        recipients = await count_recipients(directory, body.scope)
        started = await start_broadcast(temporal(), news, settings.task_queue)
        # Once per news id: the world systems hear of it once however many NPCs do.
        routed = await inbox.route(event, map_name=body.scope.map)
        return WorldEventAccepted(
            news_id=news.news_id,
            workflow_id=broadcast_workflow_id(news.news_id),
            recipients=recipients,
            started=started,
            routed=routed,
        )

    return router
