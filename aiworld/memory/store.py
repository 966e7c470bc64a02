"""An NPC's memories, relationships and public state in the state store (DESIGN.md §5, §8).

Every write is idempotent — memories are keyed by ids derived from the decision sequence, and a
relationship change is applied once per change id — because activities run again after a retry
or a `temporal workflow reset`. Each memory is its record (`json`, and the raw vector field the
store's vector index reads when the server has FT.SEARCH), its vector in the NPC's vector hash
and its cue (what ranking takes besides the vector) in the NPC's cue hash: a recall reads every
candidate's cue and vector from those two hashes at once. Retrieval is in
aiworld.memory.retrieval, tiers and pruning in aiworld.memory.consolidation.
"""

from __future__ import annotations

import functools
import json
import logging
from datetime import UTC, datetime

import redis.asyncio as redis
from pydantic import ValidationError
from redis.client import NEVER_DECODE

from aiworld.config import MemorySettings, Settings
from aiworld.memory.embeddings import EmbedCall, Embedder, pack, raw_vector, unpack
from aiworld.memory.relationships import RelationshipMove, Relationships
from aiworld.memory.retrieval import (
    Cue,
    CueTable,
    InProcessSearch,
    Newest,
    ScoredMemory,
    StoreSearch,
    VectorSearch,
    rank,
    score,
    store_has_search,
)
from aiworld.models import Memory, NpcProfile, describe_invalid
from aiworld.store.keys import Keys, text_of
from aiworld.store.scripts import run_script_batch, run_script_undecoded
from aiworld.world.directory import NpcDirectory
from aiworld.world.store import PROFILE_FIELD, published_profiles

log = logging.getLogger(__name__)

# Every memory's record and, when asked, its vector, in one round trip (a pipeline of one HMGET
# per memory cost a recall most of its CPU in the client's per-command work). KEYS: the memories'
# hashes, then the NPC's vector hash; ARGV: '1' with vectors, then the memory ids. Each memory
# answers its record, its vector, and the text vector of a memory stored before the vector hash.
_LOAD_MEMORIES = """
local with_vectors = ARGV[1] == '1'
local vectors = KEYS[#KEYS]
local found = {}
for index = 1, #KEYS - 1 do
  found[#found + 1] = redis.call('HGET', KEYS[index], 'json')
  local vector = with_vectors and redis.call('HGET', vectors, ARGV[index + 1])
  found[#found + 1] = vector
  found[#found + 1] = with_vectors and not vector and redis.call('HGET', KEYS[index], 'vec')
end
return found
"""

# The cue and vector of memories stored before the cue and vector hashes: each record's `cue`
# (older still: its JSON, the cue's source) and its text vector.
_LOAD_OLD_CUES = """
local with_vectors = ARGV[1] == '1'
local found = {}
for _, key in ipairs(KEYS) do
  found[#found + 1] = redis.call('HGET', key, 'cue') or redis.call('HGET', key, 'json')
  found[#found + 1] = with_vectors and redis.call('HGET', key, 'vec')
end
return found
"""

# A memory is stored once, and never again once its day was consolidated into a summary (a reset
# re-running an old activity must not bring back what was summarized or forgotten). KEYS: its
# record, the NPC's memory index, meta, cue hash and vector hash.
_ADD_MEMORY = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local horizon = tonumber(redis.call('HGET', KEYS[3], 'consolidated_until'))
if horizon and tonumber(ARGV[2]) < horizon then return 0 end
redis.call('HSET', KEYS[1], 'json', ARGV[1], 'npc', ARGV[4])
redis.call('HSET', KEYS[4], ARGV[3], ARGV[7])
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[5], ARGV[3], ARGV[5])
  if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], ARGV[6], ARGV[5]) end
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return 1
"""


def embedded_text(memory: Memory) -> str:
    """What a memory means: the narration and the words said."""
    return f"{memory.text} {memory.words}" if memory.words else memory.text


class MemoryStore:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        settings: MemorySettings | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self._redis = self.redis = client
        self._keys = self.keys = keys
        self.settings = settings or MemorySettings()
        self.embedder = embedder or Embedder(client, keys, dimensions=self.settings.local_embedding_dimensions)
        self._directory = NpcDirectory(client, keys)
        self._add = client.register_script(_ADD_MEMORY)
        self._load = client.register_script(_LOAD_MEMORIES)
        self._load_old_cues = client.register_script(_LOAD_OLD_CUES)
        self.relationship_graph = Relationships(
            client,
            keys,
            change_ttl_seconds=self.settings.idempotency_ttl_seconds,
            history_length=self.settings.relationship_history_length,
        )
        self._vector_search: VectorSearch | None = None

    async def vector_search(self) -> VectorSearch:
        """The store's FT.SEARCH when it has one (and the settings allow), else in process."""
        if self._vector_search is None:
            wanted = self.settings.vector_search
            if wanted == "store" or (wanted == "auto" and await store_has_search(self._redis)):
                self._vector_search = StoreSearch(self._redis, self._keys)
            else:
                self._vector_search = InProcessSearch(self._redis, self._keys, self.settings.max_memories_per_npc)
        return self._vector_search

    async def remember(self, npc_id: str, memory: Memory) -> bool:
        """Store a memory once; False when that memory id exists already (or its day is summarized)."""
        return bool(await self.remember_all(npc_id, [memory]))

    async def remember_all(self, npc_id: str, memories: list[Memory]) -> list[Memory]:
        """Store each memory once, with its vector (embedded in one batch); returns those added."""
        added = await self.remember_each([(npc_id, memory) for memory in memories])
        return [memory for memory, stored in zip(memories, added, strict=True) if stored]

    async def remember_each(self, memories: list[tuple[str, Memory]]) -> list[bool]:
        """Each (npc id, memory) stored once, embedded in one batch; True for each memory added now
        (False: it existed already, or its day is summarized)."""
        if not memories:
            return []
        vectors = await self.embedder.embed([embedded_text(memory) for _, memory in memories])
        return await self._add_records(memories, vectors)

    async def _add_records(self, memories: list[tuple[str, Memory]], vectors: list[list[float]]) -> list[bool]:
        """Each memory's record (its JSON, its vector when it has one), once, all in one round
        trip; True for each added now."""
        search = await self.vector_search()
        calls = []
        for (npc_id, memory), vector in zip(memories, vectors, strict=True):
            raw_field = await search.index(len(vector)) if vector else None
            calls.append(
                (
                    [
                        self._keys.memory(npc_id, memory.memory_id),
                        self._keys.memory_index(npc_id),
                        self._keys.memory_meta(npc_id),
                        self._keys.memory_cues(npc_id),
                        self._keys.memory_vectors(npc_id),
                    ],
                    [
                        memory.model_dump_json(),
                        memory.created_at.timestamp(),
                        memory.memory_id,
                        npc_id,
                        pack(vector) if vector else b"",
                        raw_field or "",
                        Cue.of(memory).pack(),
                    ],
                )
            )
        return [bool(stored) for stored in await run_script_batch(self._redis, self._add, calls)]

    async def load(
        self, npc_id: str, memory_ids: list[str], *, with_vectors: bool = True
    ) -> list[tuple[Memory, list[float]]]:
        """The memories with their vectors (empty ones without `with_vectors`); damaged records
        are skipped (and logged), not fatal."""
        if not memory_ids:
            return []
        found = await run_script_undecoded(
            self._redis,
            self._load,
            [*(self._keys.memory(npc_id, memory_id) for memory_id in memory_ids), self._keys.memory_vectors(npc_id)],
            [int(with_vectors), *memory_ids],
        )
        loaded = []
        for memory_id, item, raw, text in zip(memory_ids, found[0::3], found[1::3], found[2::3], strict=True):
            if not item:
                continue
            try:
                memory = Memory.model_validate_json(item)
            except ValidationError as error:
                # One damaged record must not cost the NPC all its memories (or its life).
                log.warning("skipping corrupt memory %s of %s: %s", memory_id, npc_id, describe_invalid(error))
                continue
            # A damaged vector costs the memory its relevance, not its place.
            loaded.append((memory, unpack(raw or raw_vector(text))))
        return loaded

    async def newest_ids(self, npc_id: str, count: int) -> list[str]:
        ids = await self._redis.zrevrange(self._keys.memory_index(npc_id), 0, count - 1)
        return [text_of(memory_id) for memory_id in ids]

    async def all_ids(self, npc_id: str) -> list[str]:
        return [text_of(memory_id) for memory_id in await self._redis.zrange(self._keys.memory_index(npc_id), 0, -1)]

    async def cues(self, npc_id: str, candidates: list[str] | Newest, *, with_vectors: bool) -> CueTable:
        """The candidates' cues (and vectors), in one round trip (one more for memories stored by
        an older version); a memory gone meanwhile is left out, a damaged cue too (and logged)."""
        if isinstance(candidates, Newest):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zcard(self._keys.memory_index(npc_id))
                pipe.execute_command("HGETALL", self._keys.memory_cues(npc_id), **{NEVER_DECODE: True})
                if with_vectors:
                    pipe.execute_command("HGETALL", self._keys.memory_vectors(npc_id), **{NEVER_DECODE: True})
                held, cues, *vectors = await pipe.execute()
            if held == len(cues):
                # The cue hash holds each of the NPC's memories: no list of ids to ask for, or to
                # send (packing hundreds of ids cost more than the rest of the recall).
                by_id = vectors[0] if vectors else {}
                table = await self._table(
                    npc_id,
                    [memory_id.decode() for memory_id in cues],
                    list(cues.values()),
                    [by_id.get(memory_id) for memory_id in cues],
                    with_vectors=with_vectors,
                )
                return table.newest(candidates.count)
            candidates = await self.newest_ids(npc_id, candidates.count)
        if not candidates:
            return CueTable()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.execute_command("HMGET", self._keys.memory_cues(npc_id), *candidates, **{NEVER_DECODE: True})
            if with_vectors:
                pipe.execute_command("HMGET", self._keys.memory_vectors(npc_id), *candidates, **{NEVER_DECODE: True})
            found, *vectors = await pipe.execute()
        return await self._table(
            npc_id, candidates, found, vectors[0] if vectors else [None] * len(candidates), with_vectors=with_vectors
        )

    async def _table(
        self,
        npc_id: str,
        memory_ids: list[str],
        cues: list[bytes | None],
        vectors: list[bytes | None],
        *,
        with_vectors: bool,
    ) -> CueTable:
        """The table `rank` takes, from each memory's stored cue (None: the memory was stored by
        an older version, or is gone) and vector."""
        present = [index for index, cue in enumerate(cues) if cue is not None]
        table = CueTable(
            [memory_ids[index] for index in present],
            [cues[index] or b"" for index in present],
            [vectors[index] for index in present],
        )
        unreadable = table.unreadable()
        for memory_id in unreadable:
            log.warning("skipping memory %s of %s: unreadable cue", memory_id, npc_id)
        if unreadable:
            table = table.without(unreadable)
        older = [memory_id for memory_id, cue in zip(memory_ids, cues, strict=True) if cue is None]
        if older:
            await self._add_older_cues(npc_id, older, table, with_vectors=with_vectors)
        return table

    async def _add_older_cues(self, npc_id: str, memory_ids: list[str], table: CueTable, *, with_vectors: bool) -> None:
        """Memories stored before the cue and vector hashes join the table from their records,
        and their cues and vectors are written to the hashes so that the next recall reads them
        there (a memory gone meanwhile is left out)."""
        flat = await self._load_old_cues(
            keys=[self._keys.memory(npc_id, memory_id) for memory_id in memory_ids], args=[int(with_vectors)]
        )
        moved_cues: dict[str, bytes] = {}
        moved_vectors: dict[str, bytes] = {}
        for memory_id, found, text in zip(memory_ids, flat[0::2], flat[1::2], strict=True):
            if not found:
                continue
            try:
                parsed = json.loads(found)
                # Older still: the cue comes from the record itself.
                cue = (
                    Cue.of(Memory.model_validate(parsed)) if isinstance(parsed, dict) else Cue.of_row(memory_id, parsed)
                )
            except (ValueError, TypeError) as error:
                log.warning("skipping memory %s of %s: unreadable: %s", memory_id, npc_id, error)
                continue
            vector = raw_vector(text) if with_vectors else None
            table.add(memory_id, cue.pack(), vector)
            moved_cues[memory_id] = cue.pack()
            if vector:
                moved_vectors[memory_id] = vector
        async with self._redis.pipeline(transaction=False) as pipe:
            if moved_cues:
                pipe.hset(self._keys.memory_cues(npc_id), mapping=moved_cues)  # type: ignore[arg-type]
            if moved_vectors:
                pipe.hset(self._keys.memory_vectors(npc_id), mapping=moved_vectors)  # type: ignore[arg-type]
            await pipe.execute()

    async def search(
        self, npc_id: str, *, now: datetime, query: str | None = None, about: str | None = None, limit: int = 8
    ) -> list[ScoredMemory]:
        """The best memories for the situation, each with its score and the score's parts: every
        candidate ranked from its cue and vector, then only the best read in full."""
        query_vector = (await self.embedder.embed([query]))[0] if query else None
        search = await self.vector_search()
        candidates = await search.candidates(npc_id, query_vector)
        table = await self.cues(npc_id, candidates, with_vectors=query_vector is not None)
        best = rank(table, query_vector=query_vector, now=now, about=about, settings=self.settings, limit=limit)
        scored = [
            score(memory, vector, query_vector=query_vector, now=now, about=about, settings=self.settings)
            for memory, vector in await self.load(npc_id, best)
        ]
        scored.sort(key=lambda item: (-item.score, item.memory.memory_id))
        return scored[:limit]

    async def recall(
        self, npc_id: str, *, now: datetime, about: str | None = None, query: str | None = None, limit: int = 8
    ) -> list[Memory]:
        return [item.memory for item in await self.search(npc_id, now=now, query=query, about=about, limit=limit)]

    async def forget(self, npc_id: str, memory_ids: list[str]) -> None:
        if not memory_ids:
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            for memory_id in memory_ids:
                pipe.delete(self._keys.memory(npc_id, memory_id))
            pipe.zrem(self._keys.memory_index(npc_id), *memory_ids)
            pipe.hdel(self._keys.memory_cues(npc_id), *memory_ids)
            pipe.hdel(self._keys.memory_vectors(npc_id), *memory_ids)
            await pipe.execute()

    async def write_summary(self, npc_id: str, summary: Memory) -> None:
        """A consolidated memory, written (or rewritten) under its own id: it may be older than the
        horizon that closes its day, which `remember` refuses."""
        await self._write_record(npc_id, summary, (await self.embedder.embed([embedded_text(summary)]))[0])

    async def _write_record(self, npc_id: str, summary: Memory, vector: list[float]) -> None:
        raw_field = await (await self.vector_search()).index(len(vector)) if vector else None
        fields: dict[str, str | bytes] = {"json": summary.model_dump_json(), "npc": npc_id}
        if raw_field:
            fields[raw_field] = pack(vector)
        async with self._redis.pipeline(transaction=True) as pipe:
            # A record of an older version kept its cue and vector in itself: they are stale now.
            pipe.hdel(self._keys.memory(npc_id, summary.memory_id), "cue", "vec")
            pipe.hset(self._keys.memory(npc_id, summary.memory_id), mapping=fields)  # type: ignore[arg-type]
            pipe.hset(self._keys.memory_cues(npc_id), summary.memory_id, Cue.of(summary).pack())
            if vector:
                pipe.hset(self._keys.memory_vectors(npc_id), summary.memory_id, pack(vector))
            else:  # a summary rewritten without a vector must not keep the old text's
                pipe.hdel(self._keys.memory_vectors(npc_id), summary.memory_id)
            pipe.zadd(self._keys.memory_index(npc_id), {summary.memory_id: summary.created_at.timestamp()})
            await pipe.execute()

    async def close_days_until(self, npc_id: str, until: datetime) -> None:
        """Memories created before `until` are summarized: they are not stored again."""
        meta = self._keys.memory_meta(npc_id)
        current = await self._redis.hget(meta, "consolidated_until")
        if current is None or float(text_of(current)) < until.timestamp():
            await self._redis.hset(meta, "consolidated_until", until.timestamp())

    async def count_and_consolidated_on(self, npc_id: str) -> tuple[int, str | None]:
        """How many memories the NPC holds and the game day it was last consolidated on, in one
        round trip: asked after every decision's writes."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self._keys.memory_index(npc_id))
            pipe.hget(self._keys.memory_meta(npc_id), "consolidated_on")
            held, day = await pipe.execute()
        return int(held), text_of(day) if day is not None else None

    async def mark_consolidated_on(self, npc_id: str, day: str) -> None:
        await self._redis.hset(self._keys.memory_meta(npc_id), "consolidated_on", day)

    async def count(self, npc_id: str) -> int:
        return await self._redis.zcard(self._keys.memory_index(npc_id))

    async def adjust_relationship(
        self, npc_id: str, party: str, delta: int, change_id: str, reason: str, at: datetime | None = None
    ) -> int:
        """Move the score toward `party` by `delta` once per `change_id`; returns the score."""
        return await self.relationship_graph.adjust(npc_id, party, delta, change_id, reason, at or datetime.now(UTC))

    async def adjust_relationships(self, moves: list[RelationshipMove]) -> list[int]:
        """Each move once per its change id, in one round trip; returns the scores, in order."""
        return await self.relationship_graph.adjust_all(moves)

    async def relationships(self, npc_id: str, parties: list[str]) -> dict[str, int]:
        return await self.relationship_graph.scores(npc_id, parties)

    async def publish_npc(self, profile: NpcProfile, fields: dict[str, str]) -> None:
        """The `npc:{id}` hash other processes read: who the NPC is and what it does now, written
        with its place in the directory (one round trip while it stays on its map)."""
        await self._directory.place(
            profile.npc_id,
            profile.map,
            profile.x,
            profile.y,
            profile.faction,
            record={
                "name": profile.name,
                "map": profile.map,
                "x": profile.x,
                "y": profile.y,
                "personality": profile.personality.description,
                "faction_id": profile.faction,
                "faction_loyalty": profile.faction_loyalty,
                "wealth": profile.wealth,
                "goal": profile.goals[0] if profile.goals else "",
                PROFILE_FIELD: profile.model_dump_json(),  # what the world cycles act through
                **fields,
            },
        )

    async def published_profiles(self, npc_ids: list[str]) -> dict[str, NpcProfile]:
        return await published_profiles(self._redis, self._keys, npc_ids)

    async def world_state(self) -> dict[str, str]:
        """economy/politics/environment flattened to `system.key` for prompts and the offline policy."""
        systems = ("economy", "politics", "environment")
        async with self._redis.pipeline(transaction=False) as pipe:  # one round trip, read on every decision
            for system in systems:
                pipe.hgetall(self._keys.world(system))
            read = await pipe.execute()
        return {
            f"{system}.{text_of(key)}": text_of(value)
            for system, values in zip(systems, read, strict=True)
            for key, value in values.items()
        }


def memory_store_outside_worker(settings: Settings, client: redis.Redis, keys: Keys) -> MemoryStore:
    """The memory store of a process that decides nothing (the API, the embedded demo's game).

    It embeds in the space the worker embeds memories in: the LLM chain's when a provider is
    configured, else the local embedding. The chain (every provider SDK) is built on first use.
    """
    provider: EmbedCall | None = None
    if settings.memory.embeddings == "provider" and settings.llm.default_provider != "offline":
        chain: list[EmbedCall] = []

        async def provider(texts: list[str]) -> list[list[float]]:
            if not chain:
                from aiworld.llm import build_router  # every provider SDK: loaded only when needed

                chain.append(functools.partial(build_router(settings, client, keys).embed, local_fallback=False))
            return await chain[0](texts)

    embedder = Embedder(
        client,
        keys,
        provider,
        cache_ttl_seconds=settings.memory.embedding_cache_ttl_seconds,
        dimensions=settings.memory.local_embedding_dimensions,
    )
    return MemoryStore(client, keys, settings.memory, embedder)
