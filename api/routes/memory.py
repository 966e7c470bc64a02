"""What NPCs remember and how they stand with each other, for operators and viewers:
`GET /ai/npc/{id}/memories` (scored, with the score's parts), `GET /ai/npc/{id}/relationships`
and `GET /ai/world/graph` (nodes and edges of the relationship graph)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as redis
from fastapi import APIRouter, Path, Query
from fastapi.routing import APIRoute
from pydantic import BaseModel

from aiworld.memory.relationships import Relationship, relationship_type
from aiworld.memory.retrieval import ScoredMemory
from aiworld.memory.store import MemoryStore
from aiworld.models import NPC_ID_PATTERN
from aiworld.store.keys import Keys
from aiworld.world.directory import NpcDirectory
from api.errors import ApiError

MAX_QUERY_CHARS = 200
MAX_GRAPH_EDGES = 10_000


class NpcMemories(BaseModel):
    npc_id: str
    query: str | None
    # Which search proposed the candidates: `store` (FT.SEARCH KNN) or `in_process`.
    search: str
    total: int
    memories: list[ScoredMemory]


class NpcRelationships(BaseModel):
    npc_id: str
    relationships: list[Relationship]


class GraphNode(BaseModel):
    id: str
    kind: str  # npc, player, faction
    map: str | None = None


class GraphEdge(BaseModel):
    source: str
    target: str
    score: int
    type: str


class WorldGraph(BaseModel):
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    truncated: bool = False


def _node_id(owner: str) -> str:
    """Owners are NPC ids or `faction:{id}`; in the graph every node id names its kind."""
    return owner if ":" in owner else f"npc:{owner}"


def memory_routes(
    route_class: type[APIRoute],
    store: Callable[[], redis.Redis],
    keys: Keys,
    memory_store: Callable[[], Awaitable[MemoryStore]],
    responses: dict[int | str, dict[str, Any]],
) -> APIRouter:
    """The routes, behind the same credentials check as every other endpoint (`route_class`)."""
    router = APIRouter(route_class=route_class, tags=["memory"])

    async def require_known(npc_id: str) -> None:
        known = await store().exists(keys.npc(npc_id), keys.memory_index(npc_id), keys.relationships(npc_id))
        if not known:
            raise ApiError(404, f"no NPC {npc_id!r} has lived here")

    @router.get(
        "/ai/npc/{npc_id}/memories",
        response_model=NpcMemories,
        responses={**responses, 404: {"description": "no such NPC"}},
    )
    async def npc_memories(
        npc_id: str = Path(pattern=NPC_ID_PATTERN),
        query: str | None = Query(None, min_length=1, max_length=MAX_QUERY_CHARS, description="what to recall"),
        about: str | None = Query(None, pattern=r"^(player|npc|faction):[A-Za-z0-9_]{1,40}$"),
        limit: int = Query(10, ge=1, le=100),
    ) -> NpcMemories:
        """An NPC's best memories for a query (or for now), each with its score and the score's parts."""
        await require_known(npc_id)
        memories = await memory_store()
        found = await memories.search(npc_id, now=datetime.now(UTC), query=query, about=about, limit=limit)
        return NpcMemories(
            npc_id=npc_id,
            query=query,
            search=(await memories.vector_search()).name,
            total=await memories.count(npc_id),
            memories=found,
        )

    @router.get(
        "/ai/npc/{npc_id}/relationships",
        response_model=NpcRelationships,
        responses={**responses, 404: {"description": "no such NPC"}},
    )
    async def npc_relationships(npc_id: str = Path(pattern=NPC_ID_PATTERN)) -> NpcRelationships:
        """How an NPC stands with players, NPCs and factions: score, type, history, last interaction."""
        await require_known(npc_id)
        memories = await memory_store()
        return NpcRelationships(npc_id=npc_id, relationships=await memories.relationship_graph.details(npc_id))

    @router.get("/ai/world/graph", response_model=WorldGraph, responses=responses)
    async def world_graph(
        max_edges: int = Query(2000, ge=1, le=MAX_GRAPH_EDGES, description="edges returned at most"),
    ) -> WorldGraph:
        """Every NPC, and every relationship as an edge (owner -> party), for a viewer."""
        memories = await memory_store()
        graph = memories.relationship_graph
        nodes = {
            f"npc:{npc_id}": GraphNode(id=f"npc:{npc_id}", kind="npc", map=map_name)
            for npc_id, map_name in (await NpcDirectory(store(), keys).everyone()).items()
        }
        edges: list[GraphEdge] = []
        truncated = False
        for owner in await graph.owners():
            for party, score in sorted((await graph.scores(owner)).items()):
                if len(edges) == max_edges:
                    truncated = True
                    break
                edges.append(
                    GraphEdge(source=_node_id(owner), target=party, score=score, type=relationship_type(score, 0))
                )
        for edge in edges:
            for node_id in (edge.source, edge.target):
                if node_id not in nodes:
                    nodes[node_id] = GraphNode(id=node_id, kind=node_id.partition(":")[0])
        return WorldGraph(nodes=sorted(nodes.values(), key=lambda node: node.id), edges=edges, truncated=truncated)

    return router
