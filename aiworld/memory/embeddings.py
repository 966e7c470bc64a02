"""Vectors of what NPCs remember: from the LLM chain's `embed()` (cached, counted, batched), or a
deterministic local embedding when no provider is configured, so that retrieval by meaning works
in the demo world and the tests with no key and no model download.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import operator
import re
from array import array
from collections.abc import Awaitable, Callable, Sequence

import redis.asyncio as redis

from aiworld.store.keys import Keys, text_of

EmbedCall = Callable[[list[str]], Awaitable[list[list[float]]]]

LOCAL_DIMENSIONS = 256
_WORD = re.compile(r"[a-z0-9]+")
# Words that carry no meaning of their own: they would make every line look alike.
_STOP_WORDS = frozenset(
    "a an the and or but of to in on at for with by from is are was were be been am i me my you your he she it "
    "we they them his her its our their this that these those do does did have has had what who whom which "
    "any some there here so as if then than not no yes can will would shall should may might must".split()
)
_SUFFIXES = ("ings", "ing", "ies", "ied", "es", "ed", "s")


def _stem(word: str) -> str:
    """A crude stemmer: "herbs" and "herb", "bought" stays: enough to match a question to a memory."""
    for suffix in _SUFFIXES:
        if len(word) - len(suffix) >= 3 and word.endswith(suffix):
            return word[: -len(suffix)] + ("y" if suffix in ("ies", "ied") else "")
    return word


def _bucket(feature: str, dimensions: int) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    # A sign per feature keeps collisions from adding up to false similarity.
    return value % dimensions, 1.0 if (value >> 63) & 1 else -1.0


@functools.lru_cache(maxsize=1 << 15)
def _word_features(word: str, dimensions: int) -> tuple[tuple[int, float], ...]:
    """Where a word adds to the vector: its stem (weight 1) and the stem's character trigrams
    (weight 1/n). Cached: words repeat across memories, and hashing each feature again was most of
    the CPU an NPC's decision spent embedding what it lived and what it recalls."""
    stem = _stem(word)
    features = [_bucket(f"w:{stem}", dimensions)]
    padded = f"^{stem}$"
    trigrams = [padded[i : i + 3] for i in range(len(padded) - 2)]
    for trigram in trigrams:
        index, sign = _bucket(f"t:{trigram}", dimensions)
        features.append((index, sign / len(trigrams)))
    return tuple(features)


def local_embedding(text: str, dimensions: int = LOCAL_DIMENSIONS) -> list[float]:
    """Hashed word stems (weight 1) and their character trigrams (weight 1/n, so that a misspelt or
    inflected word still lands near), normalized to length 1. Deterministic across processes."""
    vector = [0.0] * dimensions
    for word in _WORD.findall(text.lower()):
        if word in _STOP_WORDS:
            continue
        for index, weight in _word_features(word, dimensions):
            vector[index] += weight
    norm = math.sqrt(sum(value * value for value in vector))
    return [value / norm for value in vector] if norm else vector


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Similarity of two vectors; 0 for vectors of different spaces (another model's dimensions)."""
    if len(a) != len(b) or not a:
        return 0.0
    # map/hypot run in C: retrieval in process scores every memory of an NPC per query.
    norm = math.hypot(*a) * math.hypot(*b)
    return sum(map(operator.mul, a, b)) / norm if norm else 0.0


def pack(vector: Sequence[float]) -> bytes:
    """float32, little-endian: the layout FT.SEARCH's VECTOR fields read."""
    return array("f", vector).tobytes()


def unpack(raw: bytes | None) -> list[float]:
    """Vector bytes (`pack`) as the vector; empty when there are none or they are damaged."""
    if not raw or len(raw) % 4:
        return []
    values = array("f")
    values.frombytes(raw)
    return values.tolist()


def to_text(vector: Sequence[float]) -> str:
    """The same bytes as text, for clients that decode every answer as UTF-8."""
    return base64.b64encode(pack(vector)).decode()


def from_text(value: object) -> list[float]:
    values = array("f")
    values.frombytes(base64.b64decode(text_of(value)))
    return values.tolist()


def raw_vector(value: object) -> bytes | None:
    """A stored vector (`to_text`) as its float32 bytes; None when there is none or it is damaged."""
    if not value:
        return None
    try:
        raw = base64.b64decode(value, validate=True)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return None
    return raw if raw and len(raw) % 4 == 0 else None


class EmbeddingsUnavailable(Exception):
    """No provider answered with embeddings (the Embedder then embeds locally, uncached)."""


class Embedder:
    """Embeds texts once: vectors are cached in the state store by text (and source) with a TTL,
    the misses of one call go to the provider in one batch, and hits and misses are counted with
    the LLM layer's other counters."""

    def __init__(
        self,
        store: redis.Redis,
        keys: Keys,
        provider: EmbedCall | None = None,
        *,
        cache_ttl_seconds: int = 86_400,
        dimensions: int = LOCAL_DIMENSIONS,
    ) -> None:
        self._store = store
        self._keys = keys
        self._provider = provider
        self._ttl = cache_ttl_seconds
        self._dimensions = dimensions
        self.source = "provider" if provider else f"local{dimensions}"

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if self._provider is None:
            return [local_embedding(text, self._dimensions) for text in texts]
        cache_keys = [
            self._keys.embedding_cache(hashlib.sha256(f"{self.source}\0{t}".encode()).hexdigest()) for t in texts
        ]
        cached = await self._store.mget(cache_keys) if self._ttl and texts else [None] * len(texts)
        missing = [index for index, value in enumerate(cached) if value is None]
        vectors: list[list[float] | None] = [from_text(value) if value is not None else None for value in cached]
        if missing:
            try:
                fresh = await self._provider([texts[index] for index in missing])
                from_provider = len(fresh) == len(missing)  # one that answers short is not trusted
            except EmbeddingsUnavailable:
                from_provider = False
            if not from_provider:
                # Kept out of the cache: once a provider answers again, these texts get its vectors.
                fresh = [local_embedding(texts[index], self._dimensions) for index in missing]
            async with self._store.pipeline(transaction=False) as pipe:
                for index, vector in zip(missing, fresh, strict=True):
                    vectors[index] = vector
                    if self._ttl and from_provider:
                        pipe.set(cache_keys[index], to_text(vector), ex=self._ttl)
                counter = "cache_misses" if from_provider else "local_fallbacks"
                pipe.hincrby(self._keys.llm_counter(), f"embeddings.memory.{counter}", len(missing))
                await pipe.execute()
        hits = len(texts) - len(missing)
        if hits:
            await self._store.hincrby(self._keys.llm_counter(), "embeddings.memory.cache_hits", hits)
        return [vector or [] for vector in vectors]
