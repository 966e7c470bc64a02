"""The world viewer: a page of the API, and the JSON and live stream it draws from.

The page and its script are public (they hold no data); everything they show comes from guarded
endpoints with the API's own credentials, sent as a header, never in a URL. The live stream is
server-sent events read with fetch() (EventSource cannot send a header), fed by the world feed
that saving each decision appends to: a viewer costs one blocking read of the state store, not a
query to every NPC. The world systems, tiered memories and the LLM budget may not exist yet on a
given deployment: what is missing comes back empty, and the page says "no data yet".
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as redis
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError
from redis.exceptions import RedisError
from temporalio.client import Client
from temporalio.service import RPCError

from aiworld.config import Settings
from aiworld.memory.store import MemoryStore
from aiworld.models import MAX_MAP_COORDINATE, DecisionRecord, NpcProfile
from aiworld.store.keys import Keys, text_of
from aiworld.temporal import npc_workflow_id
from aiworld.world.definition import load_world
from aiworld.world.directory import NpcDirectory
from aiworld.world.feed import WorldFeed
from aiworld.world.quests import Quest
from aiworld.world.store import WorldStore
from api.errors import ApiError

log = logging.getLogger(__name__)

PAGE_DIR = Path(__file__).parents[1] / "viewer"
PAGE_FILES = {"viewer.js": "text/javascript", "viewer.css": "text/css"}
# Entries a page gets on load, then the stream goes on from the last of them.
RECENT_ENTRIES = 60
# A blocking read this long, then a comment line, so proxies and the browser see the stream alive.
STREAM_BLOCK_MS = 10_000
CARD_QUERY_SECONDS = 3.0
CARD_MEMORIES = 8
CARD_RELATIONSHIPS = 12
HISTORY_ENTRIES = 300
# Cells around the NPCs' areas when a map is drawn to the extent of what lives on it.
MAP_MARGIN = 10
STREAM_ID = re.compile(r"^(\$|\d{1,20}-\d{1,20})$")
_PRICE_FIELD = re.compile(r"^price:(\d{1,7})$")
_RELATION_FIELD = re.compile(r"^relation:([a-z0-9_]{1,32}):([a-z0-9_]{1,32})$")
_WEATHER_FIELD = re.compile(r"^weather:([a-z0-9_@-]{1,15})$")


def viewer_router(settings: Settings, route_class: type[APIRoute], resources: dict[str, Any]) -> APIRouter:
    """The viewer's routes; `route_class` checks credentials first (the API's guarded routes)."""
    keys = Keys(settings.redis_key_prefix)
    definition = load_world(settings.world_file)
    profiles = {npc.npc_id: npc for npc in definition.npcs}
    public = APIRouter(tags=["viewer"])
    guarded = APIRouter(tags=["viewer"], route_class=route_class)

    def store() -> redis.Redis:
        return resources["store"]

    def temporal() -> Client:
        return resources["client"]

    @public.get("/viewer", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(PAGE_DIR / "index.html", media_type="text/html", headers=_NO_FRAMES)

    @public.get("/viewer/{name}", include_in_schema=False)
    async def page_file(name: str) -> FileResponse:
        if name not in PAGE_FILES:
            raise ApiError(404, f"no viewer file {name!r}")
        return FileResponse(PAGE_DIR / name, media_type=PAGE_FILES[name], headers=_NO_FRAMES)

    @guarded.get("/ai/viewer/world")
    async def world() -> dict[str, Any]:
        """Every map with its NPCs where they are, the newest feed entries, and where the stream goes on."""
        feed = WorldFeed(store(), keys)
        npcs = await _npcs(store(), keys, profiles)
        recent = await feed.latest(RECENT_ENTRIES)
        return {
            "maps": _maps(npcs, profiles, definition.maps),
            "recent": [{"stream_id": item.stream_id, **item.entry} for item in recent],
            "after": recent[-1].stream_id if recent else await feed.last_id(),
            "temporal_ui": settings.observability.temporal_ui_url,
            "namespace": settings.temporal_namespace,
        }

    @guarded.get("/ai/viewer/npc/{npc_id}")
    async def npc_card(npc_id: str) -> dict[str, Any]:
        """What the NPC does and why, its mood, last decisions, top memories and relationships."""
        fields = {text_of(k): text_of(v) for k, v in (await store().hgetall(keys.npc(npc_id))).items()}
        profile = profiles.get(npc_id)
        if not fields and profile is None:
            raise ApiError(404, f"no NPC {npc_id!r} in this world")
        memories = await MemoryStore(store(), keys).recall(npc_id, now=datetime.now(UTC), limit=CARD_MEMORIES)
        scores = {text_of(k): text_of(v) for k, v in (await store().hgetall(keys.relationships(npc_id))).items()}
        decisions, decisions_missing = await _recent_decisions(temporal(), npc_id)
        workflow_id = npc_workflow_id(npc_id)
        return {
            "npc_id": npc_id,
            "name": fields.get("name") or (profile.name if profile else npc_id),
            "map": fields.get("map") or (profile.map if profile else None),
            "faction": fields.get("faction_id") or (profile.faction if profile else None),
            "mood": fields.get("mood"),
            "activity": fields.get("action"),
            "reason": fields.get("reason"),
            "personality": fields.get("personality") or (profile.personality.description if profile else None),
            "players_near": _json_list(fields.get("players_near")),
            "memories": [memory.model_dump(mode="json") for memory in memories],
            "relationships": _strongest(scores),
            "decisions": [decision.model_dump(mode="json") for decision in reversed(decisions)],
            "decisions_missing": decisions_missing,
            "workflow_id": workflow_id,
            "workflow_url": f"{settings.observability.temporal_ui_url.rstrip('/')}/namespaces/"
            f"{settings.temporal_namespace}/workflows/{workflow_id}",
        }

    @guarded.get("/ai/viewer/panels")
    async def panels() -> dict[str, Any]:
        """The world panel (economy, politics, environment, quests) and the LLM panel, now."""
        economy = await _hash(store(), keys.world("economy"))
        politics = await _hash(store(), keys.world("politics"))
        environment = await _hash(store(), keys.world("environment"))
        return {
            "at": datetime.now(UTC).isoformat(),
            "economy": {
                "prices": {m[1]: v for k, v in economy.items() if (m := _PRICE_FIELD.match(k))},
                "history": await _price_history(store(), keys.world_history("economy")),
                "other": {k: v for k, v in economy.items() if not _PRICE_FIELD.match(k)},
            },
            "politics": {
                "relations": [
                    {"a": m[1], "b": m[2], "score": v} for k, v in politics.items() if (m := _RELATION_FIELD.match(k))
                ],
                "other": {k: v for k, v in politics.items() if not _RELATION_FIELD.match(k)},
            },
            "environment": {
                "season": environment.get("season"),
                "day_phase": environment.get("day_phase"),
                "weather": {m[1]: v for k, v in environment.items() if (m := _WEATHER_FIELD.match(k))},
                "default_weather": environment.get("weather"),
            },
            "quests": _quests(await WorldStore(store(), keys).open_quests()),
            "llm": _llm_totals(await _hash(store(), keys.llm_counter()), settings),
        }

    @guarded.get("/ai/viewer/stream", response_class=StreamingResponse)
    async def stream(
        request: Request,
        after: str | None = Query(None, description="the last stream id the page has; `$` for only new entries"),
        last_event_id: str | None = Header(None),
    ) -> StreamingResponse:
        """Server-sent events of the world feed, from after the given id (or the Last-Event-ID header)."""
        start = last_event_id or after or "$"
        if not STREAM_ID.match(start):
            raise ApiError(422, "after: expected a stream id like 1700000000000-0, or $")
        feed = WorldFeed(store(), keys)
        return StreamingResponse(
            _events(feed, start, request.is_disconnected),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    router = APIRouter()
    router.include_router(public)
    router.include_router(guarded)
    return router


# Only the page's own files run, nothing loads from elsewhere, and no other site may frame it.
_NO_FRAMES = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


async def _events(feed: WorldFeed, start: str, disconnected: Callable[[], Any]) -> AsyncIterator[str]:
    """The feed as server-sent events. A store that fails ends the stream (its status is long
    sent): the page reconnects from the last id it saw, so nothing is lost meanwhile."""
    yield "retry: 2000\n\n"
    try:
        last = start if start != "$" else await feed.last_id()
        while not await disconnected():
            items = await feed.after(last, STREAM_BLOCK_MS)
            for item in items:
                last = item.stream_id
                yield f"id: {item.stream_id}\ndata: {json.dumps({'stream_id': item.stream_id, **item.entry})}\n\n"
            if not items:
                yield ": alive\n\n"
    except (RedisError, OSError) as error:
        log.warning("viewer stream ended: the state store failed: %r", error)
        yield ": the state store is unavailable; reconnect\n\n"


async def _hash(store: redis.Redis, key: str) -> dict[str, str]:
    return {text_of(k): text_of(v) for k, v in (await store.hgetall(key)).items()}


async def _npcs(store: redis.Redis, keys: Keys, profiles: dict[str, NpcProfile]) -> list[dict[str, Any]]:
    """Every NPC the directory lists, and those of the world file that have not saved a decision
    yet (a sleeping NPC is there all the same, at its spawn point)."""
    listed = await NpcDirectory(store, keys).everyone()
    ids = sorted(set(listed) | set(profiles))
    async with store.pipeline(transaction=False) as pipe:
        for npc_id in ids:
            pipe.hgetall(keys.npc(npc_id))
        hashes = await pipe.execute()
    npcs = []
    for npc_id, raw in zip(ids, hashes, strict=True):
        fields = {text_of(k): text_of(v) for k, v in raw.items()}
        profile = profiles.get(npc_id)
        try:
            where, x, y = fields["map"], int(fields["x"]), int(fields["y"])
        except (KeyError, ValueError):
            # Not saved yet, or damaged: the world file's place, else drawn after its next save.
            if profile is None:
                continue
            where, x, y = profile.map, profile.x, profile.y
        npcs.append(
            {
                "npc_id": npc_id,
                "name": fields.get("name") or (profile.name if profile else npc_id),
                "map": where,
                "x": x,
                "y": y,
                "faction": fields.get("faction_id") or (profile.faction if profile else "none"),
                "mood": fields.get("mood") or "calm",
                "activity": fields.get("action") or "idling",
                "reason": fields.get("reason") or "",
                "players_near": _json_list(fields.get("players_near")),
            }
        )
    return npcs


def _maps(
    npcs: list[dict[str, Any]], profiles: dict[str, NpcProfile], sizes: dict[str, tuple[int, int]]
) -> list[dict[str, Any]]:
    """Maps drawn at their size where the world file gives it (`maps:`, from the game's map
    cache); elsewhere around what lives on them: the cells spanned by their NPCs' walking areas,
    with a margin."""
    maps: dict[str, dict[str, Any]] = {}
    for npc in npcs:
        profile = profiles.get(npc["npc_id"])
        area = profile.area if profile is not None and profile.map == npc["map"] else None
        left, bottom, right, top = (area.x1, area.y1, area.x2, area.y2) if area else (npc["x"], npc["y"]) * 2
        left, bottom = min(left, npc["x"]), min(bottom, npc["y"])
        right, top = max(right, npc["x"]), max(top, npc["y"])
        drawn = maps.setdefault(npc["map"], {"name": npc["map"], "x0": left, "y0": bottom, "x1": right, "y1": top})
        drawn.setdefault("npcs", []).append(npc)
        drawn.update(
            x0=min(drawn["x0"], left), y0=min(drawn["y0"], bottom), x1=max(drawn["x1"], right), y1=max(drawn["y1"], top)
        )
    for name, drawn in maps.items():
        if name in sizes:
            width, height = sizes[name]
            drawn.update(x0=0, y0=0, x1=width - 1, y1=height - 1, sized=True)
            continue
        drawn["x0"], drawn["y0"] = max(0, drawn["x0"] - MAP_MARGIN), max(0, drawn["y0"] - MAP_MARGIN)
        drawn["x1"] = min(MAX_MAP_COORDINATE, drawn["x1"] + MAP_MARGIN)
        drawn["y1"] = min(MAX_MAP_COORDINATE, drawn["y1"] + MAP_MARGIN)
        drawn["sized"] = False
    return [maps[name] for name in sorted(maps)]


async def _recent_decisions(client: Client, npc_id: str) -> tuple[list[DecisionRecord], str | None]:
    """The NPC's last decisions from its workflow, asked once per card; why they are missing otherwise."""
    handle = client.get_workflow_handle(npc_workflow_id(npc_id))
    try:
        async with asyncio.timeout(CARD_QUERY_SECONDS):
            return await handle.query("recent_decisions", result_type=list[DecisionRecord]), None
    except TimeoutError:
        return [], "its worker did not answer in time"
    except RPCError as error:
        return [], f"its workflow did not answer: {error.message}"


def _json_list(raw: str | None) -> list[Any]:
    try:
        value = json.loads(raw) if raw else []
    except json.JSONDecodeError:
        return []
    return value if isinstance(value, list) else []


def _strongest(scores: dict[str, str]) -> list[dict[str, Any]]:
    numeric: list[tuple[str, int]] = []
    for party, score in scores.items():
        try:
            numeric.append((party, int(float(score))))
        except ValueError:
            continue  # a damaged score: the card shows the others
    strongest = sorted(numeric, key=lambda item: -abs(item[1]))[:CARD_RELATIONSHIPS]
    return [{"party": party, "score": score} for party, score in strongest]


async def _price_history(store: redis.Redis, key: str) -> list[dict[str, Any]]:
    """Price points from the economy's history stream: every `price:{item}` field of an entry,
    at the entry's time, whether the entry holds them as fields or as one JSON object."""
    rows: Any = await store.xrevrange(key, count=HISTORY_ENTRIES)
    points = []
    for stream_id, raw in reversed(rows or []):
        fields = {text_of(k): text_of(v) for k, v in raw.items()}
        for value in list(fields.values()):
            if value.startswith("{"):
                try:
                    nested = json.loads(value)
                except json.JSONDecodeError:
                    continue
                if isinstance(nested, dict):
                    fields |= {str(k): str(v) for k, v in nested.items()}
        at = int(text_of(stream_id).split("-")[0])
        for field, value in fields.items():
            if match := _PRICE_FIELD.match(field):
                try:
                    points.append({"at": at, "item_id": match[1], "price": float(value)})
                except ValueError:
                    continue
    return points


def _quests(records: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    """The quest system's open quests (offered or taken), each as its record says; a damaged one
    is skipped (the next quest cycle rewrites or expires it)."""
    quests = []
    for quest_id, values in sorted(records.items()):
        try:
            quest = Quest.from_hash(values)
        except (KeyError, ValidationError):
            continue
        if quest.is_open:
            quests.append(
                {"quest_id": quest_id, "title": quest.title, "giver": quest.giver_name, "status": quest.status}
            )
    return quests


def _llm_totals(stats: dict[str, str], settings: Settings) -> dict[str, Any]:
    """`llm:stats` (`{provider}.{tier}.{counter}`) summed per provider, with spend at configured prices."""
    providers: dict[str, dict[str, float]] = {}
    for field, value in stats.items():
        provider, _, rest = field.partition(".")
        counter = rest.rpartition(".")[2]
        try:
            amount = float(value)
        except ValueError:
            continue
        totals = providers.setdefault(provider, {})
        totals[counter] = totals.get(counter, 0.0) + amount
    for provider, totals in providers.items():
        price = settings.llm.providers.get(provider)
        totals["spend"] = (
            (
                totals.get("tokens_in", 0.0) * price.input_price_per_1k
                + totals.get("tokens_out", 0.0) * price.output_price_per_1k
            )
            / 1000
            if price is not None
            else 0.0
        )
    summed = {
        counter: sum(totals.get(counter, 0.0) for totals in providers.values())
        for counter in ("calls", "tokens_in", "tokens_out", "cache_hits", "spend")
    }
    summed["cache_hits"] += providers.get("decision_cache", {}).get("hits", 0.0)
    return {"totals": summed, "providers": providers}
