"""Finding the memories that matter now: scored as Generative Agents did, plus emotion.

score = relevance (cosine to the query: the situation or the player's line) + recency (decay per
game hour) + importance (1..10 as 0.1..1) + salience (|valence|) + about (the memory concerns the
party in front of the NPC), each part 0..1, weighted by `memory.*_weight` settings.

Candidates come from one of two searches behind one interface: the state store's own vector
search (`FT.SEARCH` KNN: DragonflyDB, Redis 8, Redis Stack, valkey-search) when the server offers
it, or every memory of the NPC (bounded by the cap) scored in process.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
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


# A stored cue: its numbers (little-endian float64s), then its parties, each between separators.
CUE_NUMBERS = np.dtype([("created_at", "<f8"), ("importance", "<f8"), ("valence", "<f8")])
PARTY_SEPARATOR = b"\x1f"


@dataclass(frozen=True)
class Cue:
    """What ranking a memory takes besides its meaning, kept in the NPC's cue hash: a recall
    ranks every candidate from these few bytes and its vector, and reads only the winners'
    records (parsing hundreds of records per decision cost an old NPC most of its CPU)."""

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

    def pack(self) -> bytes:
        """Binary, so that a recall reads hundreds of them with one `numpy.frombuffer` (as JSON,
        parsing them cost a recall more than ranking)."""
        numbers = np.array([(self.created_at, self.importance, self.valence)], dtype=CUE_NUMBERS).tobytes()
        return numbers + PARTY_SEPARATOR + b"".join(party.encode() + PARTY_SEPARATOR for party in self.parties)

    @classmethod
    def of_row(cls, memory_id: str, row: object) -> Cue:
        """A cue from the JSON list an earlier version kept in the memory's record; ValueError
        when it is not one."""
        if not isinstance(row, list) or len(row) != 4:
            raise ValueError(f"a cue is a list of four, not {row!r}")
        created_at, importance, valence, parties = row
        if not isinstance(parties, list) or not all(isinstance(party, str) for party in parties):
            raise ValueError(f"a cue's parties are a list of names, not {parties!r}")
        return cls(memory_id, float(created_at), int(importance), float(valence), tuple(parties))


@dataclass
class CueTable:
    """A recall's candidates: their ids, packed cues (`Cue.pack`) and vectors (float32 bytes;
    None: the memory has none), ranked all at once by `rank`."""

    ids: list[str] = field(default_factory=list)
    cues: list[bytes] = field(default_factory=list)
    vectors: list[bytes | None] = field(default_factory=list)

    def add(self, memory_id: str, cue: bytes, vector: bytes | None) -> None:
        self.ids.append(memory_id)
        self.cues.append(cue)
        self.vectors.append(vector)

    def unreadable(self) -> list[str]:
        """The ids of cues too short to hold their numbers, or whose numbers are not finite."""
        size = CUE_NUMBERS.itemsize
        short = {
            index for index, cue in enumerate(self.cues) if len(cue) < size or cue[size : size + 1] != PARTY_SEPARATOR
        }
        numbers = np.frombuffer(
            b"".join(b"\0" * size if index in short else cue[:size] for index, cue in enumerate(self.cues)),
            dtype=CUE_NUMBERS,
        )
        finite = (
            np.isfinite(numbers["created_at"]) & np.isfinite(numbers["importance"]) & np.isfinite(numbers["valence"])
        )
        return [self.ids[index] for index in sorted(short | set(np.flatnonzero(~finite).tolist()))]

    def without(self, memory_ids: list[str]) -> CueTable:
        gone = set(memory_ids)
        return self._only([index for index, memory_id in enumerate(self.ids) if memory_id not in gone])

    def newest(self, count: int) -> CueTable:
        """The `count` newest (all, when there are no more), as the memory index orders them."""
        if len(self.ids) <= count:
            return self
        size = CUE_NUMBERS.itemsize
        created_at = np.frombuffer(b"".join(cue[:size] for cue in self.cues), dtype=CUE_NUMBERS)["created_at"]
        return self._only(np.argsort(-created_at, kind="stable")[:count].tolist())

    def _only(self, kept: list[int]) -> CueTable:
        return CueTable(
            [self.ids[index] for index in kept],
            [self.cues[index] for index in kept],
            [self.vectors[index] for index in kept],
        )


def rank(
    table: CueTable,
    *,
    query_vector: list[float] | None,
    now: datetime,
    about: str | None,
    settings: MemorySettings,
    limit: int,
) -> list[str]:
    """The ids of the `limit` best memories by `score`, computed for every candidate at once
    (their cues readable: see `CueTable.unreadable`). A memory without a usable vector (none,
    damaged, or of another space) has no relevance, as in `score`."""
    count = len(table.ids)
    if not count:
        return []
    size = CUE_NUMBERS.itemsize
    numbers = np.frombuffer(b"".join(cue[:size] for cue in table.cues), dtype=CUE_NUMBERS)
    hours = np.maximum(0.0, (now.timestamp() - numbers["created_at"]) / 3600)
    if about is not None:
        marker = PARTY_SEPARATOR + about.encode() + PARTY_SEPARATOR
        concerns = np.fromiter((marker in cue for cue in table.cues), float, count)
    else:
        concerns = np.zeros(count)
    relevance = np.zeros(count)
    query = np.asarray(query_vector or [], dtype=np.float64)
    query_norm = float(np.linalg.norm(query)) if query.size else 0.0
    if query_norm:
        # Vectors of another space (another model's dimensions) have no relevance.
        vector_size = 4 * query.size
        same = [
            index for index, vector in enumerate(table.vectors) if vector is not None and len(vector) == vector_size
        ]
        if same:
            matrix = np.frombuffer(b"".join(table.vectors[index] or b"" for index in same), dtype="<f4")
            matrix = matrix.reshape(len(same), query.size).astype(np.float64)
            norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix)) * query_norm
            dots = matrix @ query
            cosines = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
            # A damaged vector may hold NaN or infinities: no relevance, as a missing one.
            relevance[same] = np.maximum(0.0, np.where(np.isfinite(cosines), cosines, 0.0))
    total = (
        settings.relevance_weight * relevance
        + settings.recency_weight * np.power(settings.recency_decay_per_hour, hours)
        + settings.importance_weight * numbers["importance"] / 10
        + settings.salience_weight * np.abs(numbers["valence"])
        + settings.about_weight * concerns
    )
    # The order `score` gives, its rounded total then the id, among those that may reach the top
    # (all that come within the rounding of the limit-th best).
    if count > limit:
        threshold = np.partition(total, count - limit)[count - limit] - 1e-6
        contenders = np.flatnonzero(total >= threshold).tolist()
    else:
        contenders = list(range(count))
    order = sorted(contenders, key=lambda index: (-round(float(total[index]), 6), table.ids[index]))
    return [table.ids[index] for index in order[:limit]]


@dataclass(frozen=True)
class Newest:
    """Candidates that are the NPC's `count` newest memories: the store finds which ones they
    are in the same round trip as their cues."""

    count: int


class VectorSearch(Protocol):
    """Proposes which of an NPC's memories to score for a query."""

    name: str

    async def index(self, dimensions: int) -> str | None:
        """The hash field the memory's raw vector goes into, or None (no store index)."""
        ...

    async def candidates(self, npc_id: str, query_vector: list[float] | None) -> list[str] | Newest: ...


class InProcessSearch:
    """Every memory of the NPC, newest first, at most the cap: cosine is computed in process."""

    name = "in_process"

    def __init__(self, client: redis.Redis, keys: Keys, limit: int) -> None:
        self._redis = client
        self._keys = keys
        self._limit = limit

    async def index(self, dimensions: int) -> str | None:
        return None

    async def candidates(self, npc_id: str, query_vector: list[float] | None) -> list[str] | Newest:
        return Newest(self._limit)


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

    async def candidates(self, npc_id: str, query_vector: list[float] | None) -> list[str] | Newest:
        if not query_vector:
            return Newest(RECENT_CANDIDATES)
        recent = [
            text_of(memory_id)
            for memory_id in await self._redis.zrevrange(self._keys.memory_index(npc_id), 0, RECENT_CANDIDATES - 1)
        ]
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
