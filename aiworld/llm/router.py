"""Choosing a provider for each task, falling back along a chain, caching and accounting.

A task tier (routine decisions, dialogue) picks its first provider; `llm.fallback` follows; the
offline policy always ends the chain, so an NPC always gets a valid answer. An invalid answer
(not JSON, not of the schema) gets one repair attempt, then the next provider. A rate-limited
first provider of a routine decision, inside an activity with attempts left, raises an
ApplicationError with `next_retry_delay` = Retry-After, so Temporal retries later with the
preferred model instead of spending the fallback; a timeout or 5xx likewise makes Temporal retry
with backoff; auth and bad-request errors go straight to the next link. On the activity's last
attempt the chain is walked down instead. Dialogue never waits (a player is there).
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

import redis.asyncio as redis
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from aiworld.config import Settings
from aiworld.llm import prompts
from aiworld.llm.batching import BatchDecisions, DecisionBatcher, EntryInvalid
from aiworld.llm.bucket import TokenBucket
from aiworld.llm.providers import (
    InvalidOutput,
    Provider,
    ProviderError,
    ProviderRateLimited,
    ProviderUnavailable,
    build_provider,
)
from aiworld.memory import reflection
from aiworld.memory.embeddings import EmbeddingsUnavailable, local_embedding
from aiworld.memory.reflection import Insight
from aiworld.models import (
    Decision,
    DecisionResult,
    DecisionUsage,
    DialogueContext,
    DialogueDraft,
    Memory,
    NpcContext,
    NpcProfile,
)
from aiworld.npc import offline_policy
from aiworld.store.keys import Keys
from aiworld.world.cycle import WorldChange
from aiworld.world.words import OfflineNarrator, WorldWords

Model = TypeVar("Model", bound=BaseModel)
OFFLINE = "offline"


class LlmRouter:
    def __init__(self, settings: Settings, store: redis.Redis, keys: Keys) -> None:
        self._llm = settings.llm
        self._store = store
        self._keys = keys
        self._bucket = TokenBucket(store, keys)
        self._batchers: dict[str, DecisionBatcher] = {}
        self._providers: dict[str, Provider] = {
            name: build_provider(name, provider)
            for name, provider in self._llm.providers.items()
            if (provider.kind or name) != OFFLINE
        }

    def chain(self, tier: str) -> list[str]:
        first = self._llm.tiers.get(tier, self._llm.default_provider)
        names = [first, *self._llm.fallback, OFFLINE]
        return list(dict.fromkeys(names))  # in order, once each

    def decides_locally(self, tier: str) -> bool:
        """The offline policy first: no network, so the NPC decides inside its context read."""
        return self.chain(tier)[0] == OFFLINE

    async def _count(self, provider: str, tier: str, **fields: float) -> None:
        async with self._store.pipeline(transaction=False) as pipe:
            for field, amount in fields.items():
                pipe.hincrbyfloat(self._keys.llm_counter(), f"{provider}.{tier}.{field}", amount)
            await pipe.execute()

    async def _ask(
        self, provider: Provider, system: str, prompt: str, schema: type[Model], tier: str
    ) -> tuple[Model, DecisionUsage]:
        """One call within the provider's shared budget, with one repair attempt, counted."""
        settings = provider.settings
        await self._bucket.acquire(
            provider.name, settings.requests_per_minute, settings.tokens_per_minute, (len(system) + len(prompt)) // 4
        )
        began = time.perf_counter()
        try:
            value, completion = await provider.generate_structured(system, prompt, schema)
        except InvalidOutput as invalid:
            await self._count(provider.name, tier, invalid_outputs=1)
            value, completion = await provider.generate_structured(
                system, prompts.repair_prompt(prompt, invalid.reason), schema
            )
        latency = (time.perf_counter() - began) * 1000
        await self._count(
            provider.name,
            tier,
            calls=1,
            tokens_in=completion.tokens_in,
            tokens_out=completion.tokens_out,
            latency_ms=latency,
        )
        usage = DecisionUsage(
            provider=provider.name,
            model=completion.model,
            tier=tier,
            tokens_in=completion.tokens_in,
            tokens_out=completion.tokens_out,
            latency_ms=latency,
        )
        return value, usage

    async def _structured(
        self,
        provider: Provider,
        system: str,
        prompt: str,
        schema: type[Model],
        tier: str,
        ask: Callable[[], Awaitable[tuple[Model, DecisionUsage]]] | None = None,
    ) -> tuple[Model, DecisionUsage]:
        """One provider's answer, from the prompt cache when the same prompt was answered lately;
        otherwise from `ask` (a batched call that answers this prompt among others) or one call."""
        digest = hashlib.sha256(
            json.dumps([provider.name, provider.model, system, prompt, schema.__name__]).encode()
        ).hexdigest()
        cache_key = self._keys.llm_cache(digest)
        cached = await self._store.get(cache_key) if self._llm.prompt_cache_ttl_seconds else None
        if cached is not None:
            await self._count(provider.name, tier, cache_hits=1)
            return schema.model_validate_json(cached), DecisionUsage(
                provider=provider.name, model=provider.model, tier=tier, cached=True
            )
        await self._count(provider.name, tier, cache_misses=1)
        value, usage = await (ask() if ask else self._ask(provider, system, prompt, schema, tier))
        if self._llm.prompt_cache_ttl_seconds:
            await self._store.set(cache_key, value.model_dump_json(), ex=self._llm.prompt_cache_ttl_seconds)
        return value, usage

    def _batcher(self, provider: Provider) -> DecisionBatcher:
        if provider.name not in self._batchers:

            async def call(contexts: list[NpcContext]) -> tuple[BatchDecisions, DecisionUsage]:
                system, prompt = prompts.batch_decision_prompt(contexts)
                return await self._ask(provider, system, prompt, BatchDecisions, "routine")

            self._batchers[provider.name] = DecisionBatcher(
                call, self._llm.batch_window_ms / 1000, self._llm.batch_size
            )
        return self._batchers[provider.name]

    async def decide(self, context: NpcContext) -> DecisionResult:
        tier = "routine"
        if self.chain(tier)[0] == OFFLINE:  # deterministic and free: nothing to cache or count
            return DecisionResult(
                decision=offline_policy.decide(context), usage=DecisionUsage(provider=OFFLINE, tier=tier)
            )
        situation = self._decision_cache_key(context)
        cached = await self._store.get(situation) if self._llm.decision_cache_ttl_seconds else None
        if cached is not None:
            await self._count("decision_cache", tier, hits=1)
            result = DecisionResult.model_validate_json(cached)
            result.usage.cached = True
            return result
        system, prompt = prompts.decision_prompt(context)
        fallbacks: list[str] = []
        for position, name in enumerate(self.chain(tier)):
            if name == OFFLINE:
                return DecisionResult(
                    decision=offline_policy.decide(context),
                    usage=DecisionUsage(provider=OFFLINE, tier=tier, fallbacks=fallbacks),
                )
            provider = self._providers.get(name)
            if provider is None:
                fallbacks.append(f"{name}: not configured")
                continue
            try:
                batched = position == 0 and self._llm.batch_size > 1
                batcher = self._batcher(provider) if batched else None
                decision, usage = await self._structured(
                    provider,
                    system,
                    prompt,
                    Decision,
                    tier,
                    ask=functools.partial(batcher.submit, context) if batcher else None,
                )
            except EntryInvalid as invalid:
                fallbacks.append(f"{name}: {invalid}")
            except ProviderRateLimited as limited:
                if position == 0 and _attempts_left():
                    raise ApplicationError(
                        f"{name} is rate limited; retrying after its Retry-After",
                        type="ProviderRateLimited",
                        next_retry_delay=timedelta(seconds=limited.retry_after or 5),
                    ) from None
                fallbacks.append(str(limited))
            except ProviderUnavailable as down:
                if position == 0 and _attempts_left():
                    # A timeout or 5xx of the preferred model: Temporal retries with backoff.
                    raise ApplicationError(str(down), type="ProviderUnavailable") from None
                fallbacks.append(str(down))
            except ProviderError as error:  # auth, bad request: the same call cannot work; next link
                fallbacks.append(str(error))
            else:
                usage.fallbacks = fallbacks
                result = DecisionResult(decision=decision, usage=usage)
                if self._llm.decision_cache_ttl_seconds:
                    await self._store.set(situation, result.model_dump_json(), ex=self._llm.decision_cache_ttl_seconds)
                return result
            await self._count(name, tier, fallbacks=1)
        raise AssertionError("the chain always ends with the offline policy")

    async def converse(self, context: DialogueContext) -> tuple[DialogueDraft, DecisionUsage]:
        tier = "dialogue"
        system, prompt = prompts.dialogue_prompt(context)
        fallbacks: list[str] = []
        for name in self.chain(tier):
            if name == OFFLINE:
                return offline_policy.reply(context), DecisionUsage(provider=OFFLINE, tier=tier, fallbacks=fallbacks)
            provider = self._providers.get(name)
            if provider is None:
                fallbacks.append(f"{name}: not configured")
                continue
            try:
                draft, usage = await self._structured(provider, system, prompt, DialogueDraft, tier)
            except ProviderError as error:  # a player is waiting: never sit out a Retry-After here
                fallbacks.append(str(error))
                await self._count(name, tier, fallbacks=1)
                continue
            usage.fallbacks = fallbacks
            return draft, usage
        raise AssertionError("the chain always ends with the offline policy")

    async def narrate(self, system: str, changes: list[WorldChange]) -> tuple[WorldWords, DecisionUsage]:
        """Words for a world cycle's changes (tier `world`). A cycle is no player's wait and runs
        again on its schedule: a failing or garbled model falls through to the offline writer."""
        tier = "world"
        system_prompt, prompt = prompts.world_prompt(system, changes)
        fallbacks: list[str] = []
        for name in self.chain(tier):
            if name == OFFLINE:
                words, usage = await OfflineNarrator().narrate(system, changes)
                usage.fallbacks = fallbacks
                return words, usage
            provider = self._providers.get(name)
            if provider is None:
                fallbacks.append(f"{name}: not configured")
                continue
            try:
                words, usage = await self._structured(provider, system_prompt, prompt, WorldWords, tier)
            except ProviderError as error:
                fallbacks.append(str(error))
                await self._count(name, tier, fallbacks=1)
                continue
            usage.fallbacks = fallbacks
            return words, usage
        raise AssertionError("the chain always ends with the offline policy")

    async def reflect(self, profile: NpcProfile, evidence: list[Memory]) -> tuple[list[Insight], DecisionUsage]:
        """Insights drawn from `evidence` by the `reflection` tier; an answer that is not valid, or
        that cites no memory it was shown, goes to the next link, ending with the offline summarizer."""
        tier = "reflection"
        system, prompt = prompts.reflection_prompt(profile, evidence)
        fallbacks: list[str] = []
        for name in self.chain(tier):
            if name == OFFLINE:
                usage = DecisionUsage(provider=OFFLINE, tier=tier, fallbacks=fallbacks)
                return reflection.summarize(profile, evidence), usage
            provider = self._providers.get(name)
            if provider is None:
                fallbacks.append(f"{name}: not configured")
                continue
            try:
                draft, usage = await self._structured(provider, system, prompt, reflection.ReflectionDraft, tier)
            except ProviderError as error:
                fallbacks.append(str(error))
                await self._count(name, tier, fallbacks=1)
                continue
            insights = reflection.grounded(draft, evidence)
            if not insights:
                fallbacks.append(f"{name}: no insight cites a memory it was shown")
                await self._count(name, tier, fallbacks=1)
                continue
            usage.fallbacks = fallbacks
            return insights, usage
        raise AssertionError("the chain always ends with the offline policy")

    async def embed(self, texts: list[str], *, local_fallback: bool = True) -> list[list[float]]:
        """Vectors from the first provider of the chain that has embeddings; when none answers,
        the local embedding, or EmbeddingsUnavailable when the caller handles that itself."""
        for name in self.chain("routine"):
            provider = self._providers.get(name)
            if provider is None:
                continue
            try:
                return await provider.embed(texts)
            except ProviderError:
                continue
        if not local_fallback:
            raise EmbeddingsUnavailable("no provider of the chain answered with embeddings")
        return [local_embedding(text) for text in texts]

    def _decision_cache_key(self, context: NpcContext) -> str:
        """Similar situations share a decision for a few minutes: same NPC, mood and part of the day,
        the same players near, and the same events: who did what, said what, gave what. A decision
        names its parties (a gift to a char id, a line to a player), so a situation with other
        parties, or other words, is another situation."""
        events = [
            {
                **event.model_dump(mode="json", exclude_none=True, exclude=prompts.EVENT_BOOKKEEPING | {"player"}),
                "char_id": event.player.char_id if event.player else None,
            }
            for event in context.events
        ]
        signature = [
            context.profile.npc_id,
            context.mood,
            context.part_of_day,
            sorted(player.char_id for player in context.players_near),
            sorted(json.dumps(event, sort_keys=True) for event in events),
        ]
        return self._keys.llm_decision_cache(hashlib.sha256(json.dumps(signature).encode()).hexdigest())

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()


def _attempts_left() -> bool:
    """Whether Temporal will run this activity again (on the last attempt we fall back instead)."""
    if not activity.in_activity():
        return False
    info = activity.info()
    maximum = info.retry_policy.maximum_attempts if info.retry_policy else 0
    return maximum == 0 or info.attempt < maximum
