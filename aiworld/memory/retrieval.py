"""Finding the memories that matter now: scored as Generative Agents did, plus emotion.

score = relevance (cosine to the query: the situation or the player's line) + recency (decay per
game hour) + importance (1..10 as 0.1..1) + salience (|valence|) + about (the memory concerns the
party in front of the NPC), each part 0..1, weighted by `memory.*_weight` settings.

Candidates come from one of two searches behind one interface: the state store's own vector
search (`FT.SEARCH` KNN: DragonflyDB, Redis 8, Redis Stack, valkey-search) when the server offers
it, or every memory of the NPC (bounded by the cap) scored in process.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np
import redis.asyncio as redis
from pydantic import BaseModel
from redis.commands.search.field import TagField, VectorField
from redis.commands.search.index_definition import IndexDefinition, IndexType
from redis.commands.search.query import Query
from redis.exceptions import ResponseError

from aiworld.config import MemorySettings
from aiworld.memory.embeddings import cosine, pack
from aiworld.models import Memory
from aiworld.store.keys import Keys, text_of

log = logging.getLogger(__name__)

# How many nearest neighbours the store's vector search proposes, and how many of the newest
# memories join them (recency and importance may beat a distant meaning).
KNN_CANDIDATES = 40
RECENT_CANDIDATES = 20

# Emotions the NPCs' memories name, as valence -1..1 (unknown ones are neutral).
_VALENCE = {
    "angry": -0.8,
    "anger": -0.8,
    "fret": -0.4,
    "sorry": -0.3,
    "cry": -0.7,
    "afraid": -0.7,
    "sad": -0.6,
    "grateful": 0.7,
    "thanks": 0.6,
    "delight": 0.8,
    "love": 0.9,
    "happy": 0.6,
    "smile": 0.3,
    "impressed": 0.4,
    "satisfied": 0.3,
    "best": 0.7,
    "curious": 0.1,
}


def valence_of(emotion: str) -> float:
    return _VALENCE.get(emotion, 0.0)


class ScoredMemory(BaseModel):
    memory: Memory
    score: float
    parts: dict[str, float]


def score(
    memory: Memory,
    vector: list[float] | None,
    *,
    query_vector: list[float] | None,
    now: datetime,
    about: str | None,
    settings: MemorySettings,
    relevance: float | None = None,
) -> ScoredMemory:
    """`relevance`, when given, is a search's own judgement (0..1) instead of the vectors' cosine."""
    hours = max(0.0, (now - memory.created_at).total_seconds() / 3600)
    if relevance is None:
        relevance = max(0.0, cosine(query_vector, vector)) if query_vector and vector else 0.0
    parts = {
        "relevance": relevance,
        "recency": math.pow(settings.recency_decay_per_hour, hours),
        "importance": memory.importance / 10,
        "salience": abs(memory.valence),
        "about": 1.0 if about is not None and (memory.about == about or about in memory.participants) else 0.0,
    }
    weights = {
        "relevance": settings.relevance_weight,
        "recency": settings.recency_weight,
        "importance": settings.importance_weight,
        "salience": settings.salience_weight,
        "about": settings.about_weight,
    }
    total = sum(weights[name] * value for name, value in parts.items())
    return ScoredMemory(memory=memory, score=round(total, 6), parts={k: round(v, 6) for k, v in parts.items()})


@dataclass(frozen=True)
class Cue:
    """What ranking a memory takes besides its meaning, stored beside its record (`cue`): a
    recall ranks every candidate from these few bytes and its vector, and reads only the
    winners' records (parsing hundreds of records per decision cost an old NPC most of its CPU)."""

    memory_id: str
    created_at: float  # POSIX seconds
    importance: int
    valence: float
    # Who the memory is about and everyone it involves: what `about` is matched against.
    parties: tuple[str, ...]

    @classmethod
    def of(cls, memory: Memory) -> Cue:
        parties = ([memory.about] if memory.about else []) + memory.participants
        return cls(
            memory.memory_id,
            memory.created_at.timestamp(),
            memory.importance,
            memory.valence,
            tuple(dict.fromkeys(parties)),
        )

    def dump(self) -> str:
        """A JSON list, never an object: a reader tells a cue from a whole record by that."""
        return json.dumps([self.created_at, self.importance, self.valence, list(self.parties)], separators=(",", ":"))

    @classmethod
    def parse(cls, memory_id: str, text: str | bytes) -> Cue:
        """ValueError when the text is not a cue."""
        return cls.of_row(memory_id, json.loads(text))

    @classmethod
    def of_row(cls, memory_id: str, row: object) -> Cue:
        """A cue from its parsed JSON; ValueError when that is not one."""
        if not isinstance(row, list) or len(row) != 4:
            raise ValueError(f"a cue is a list of four, not {row!r}")
        created_at, importance, valence, parties = row
        if not isinstance(parties, list) or not all(isinstance(party, str) for party in parties):
            raise ValueError(f"a cue's parties are a list of names, not {parties!r}")
        return cls(memory_id, float(created_at), int(importance), float(valence), tuple(parties))


def rank(
    cues: Sequence[Cue],
    vectors: Sequence[bytes | None] | None,
    *,
    query_vector: list[float] | None,
    now: datetime,
    about: str | None,
    settings: MemorySettings,
    limit: int,
) -> list[str]:
    """The ids of the `limit` best memories by `score`, computed for every candidate at once.
    `vectors` holds each cue's vector as float32 bytes (None: the memory has none, or it is
    damaged: it then has no relevance, as in `score`)."""
    count = len(cues)
    if not count:
        return []
    hours = np.maximum(0.0, (now.timestamp() - np.fromiter((cue.created_at for cue in cues), float, count)) / 3600)
    importance = np.fromiter((cue.importance for cue in cues), float, count) / 10
    salience = np.abs(np.fromiter((cue.valence for cue in cues), float, count))
    concerns = np.fromiter((about is not None and about in cue.parties for cue in cues), float, count)
    relevance = np.zeros(count)
    query = np.asarray(query_vector or [], dtype=np.float64)
    query_norm = float(np.linalg.norm(query)) if query.size else 0.0
    if vectors is not None and query_norm:
        # Vectors of another space (another model's dimensions) have no relevance.
        same = [index for index, vector in enumerate(vectors) if vector is not None and len(vector) == 4 * query.size]
        if same:
            matrix = np.frombuffer(b"".join(vectors[index] or b"" for index in same), dtype="<f4")
            matrix = matrix.reshape(len(same), query.size).astype(np.float64)
            norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix)) * query_norm
            dots = matrix @ query
            cosines = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
            relevance[same] = np.maximum(0.0, cosines)
    total = (
        settings.relevance_weight * relevance
        + settings.recency_weight * np.power(settings.recency_decay_per_hour, hours)
        + settings.importance_weight * importance
        + settings.salience_weight * salience
        + settings.about_weight * concerns
    )
    # The order `score` gives, its rounded total then the id, among those that may reach the top
    # (all that come within the rounding of the limit-th best).
    if count > limit:
        threshold = np.partition(total, count - limit)[count - limit] - 1e-6
        contenders = np.flatnonzero(total >= threshold).tolist()
    else:
        contenders = list(range(count))
    order = sorted(contenders, key=lambda index: (-round(float(total[index]), 6), cues[index].memory_id))
    return [cues[index].memory_id for index in order[:limit]]


class VectorSearch(Protocol):
    """Proposes which of an NPC's memories to score for a query."""

    name: str

    async def index(self, dimensions: int) -> str | None:
        """The hash field the memory's raw vector goes into, or None (no store index)."""
        ...

    async def candidates(self, npc_id: str, query_vector: list[float] | None) -> list[str]: ...


class InProcessSearch:
    """Every memory of the NPC, newest first, at most the cap: cosine is computed in process."""

    name = "in_process"

    def __init__(self, client: redis.Redis, keys: Keys, limit: int) -> None:
        self._redis = client
        self._keys = keys
        self._limit = limit

    async def index(self, dimensions: int) -> str | None:
        return None

    async def candidates(self, npc_id: str, query_vector: list[float] | None) -> list[str]:
        ids = await self._redis.zrevrange(self._keys.memory_index(npc_id), 0, self._limit - 1)
        return [text_of(memory_id) for memory_id in ids]


_TAG_SPECIAL = re.compile(r"([^A-Za-z0-9])")


class StoreSearch:
    """FT.SEARCH KNN over the memory hashes, one index per vector dimension (a provider's
    embeddings and the local ones live side by side), filtered to the NPC by a TAG field."""

    name = "store"

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys
        self._ready: set[int] = set()

    @staticmethod
    def field(dimensions: int) -> str:
        return f"v{dimensions}"

    async def index(self, dimensions: int) -> str | None:
        if dimensions not in self._ready:
            name = self._keys.memory_search_index(dimensions)
            try:
                await self._redis.ft(name).create_index(
                    [
                        TagField("npc"),
                        VectorField(
                            self.field(dimensions),
                            "FLAT",
                            {"TYPE": "FLOAT32", "DIM": dimensions, "DISTANCE_METRIC": "COSINE"},
                        ),
                    ],
                    definition=IndexDefinition(prefix=[f"{self._keys.prefix}npc:"], index_type=IndexType.HASH),
                )
            except ResponseError as error:
                if "already exists" not in str(error).lower():
                    raise
            self._ready.add(dimensions)
        return self.field(dimensions)

    async def candidates(self, npc_id: str, query_vector: list[float] | None) -> list[str]:
        recent = [
            text_of(memory_id)
            for memory_id in await self._redis.zrevrange(self._keys.memory_index(npc_id), 0, RECENT_CANDIDATES - 1)
        ]
        if not query_vector:
            return recent
        dimensions = len(query_vector)
        await self.index(dimensions)
        tag = _TAG_SPECIAL.sub(r"\\\1", npc_id)
        query = (
            Query(f"(@npc:{{{tag}}})=>[KNN {KNN_CANDIDATES} @{self.field(dimensions)} $q AS distance]")
            .sort_by("distance")
            .return_fields("distance")
            .paging(0, KNN_CANDIDATES)
            .dialect(2)
        )
        found = await self._redis.ft(self._keys.memory_search_index(dimensions)).search(
            query, query_params={"q": pack(query_vector)}
        )
        marker = f"{self._keys.memory(npc_id, '')}"
        nearest = [text_of(doc.id)[len(marker) :] for doc in found.docs if text_of(doc.id).startswith(marker)]
        return list(dict.fromkeys(nearest + recent))


async def store_has_search(client: redis.Redis) -> bool:
    """Whether the server answers FT._LIST (a search module is loaded, or DragonflyDB's own)."""
    try:
        await client.execute_command("FT._LIST")
    except ResponseError:
        return False
    return True
