"""The LLM budget governor: what the world may spend on models, and what it does as spend nears it.

Spend is counted from the providers' own usage figures (tokens in and out, priced with the
provider's configured prices) in time-bucketed counters of the state store, shared by every
worker process: calls per minute, tokens per hour and money per day, for all tiers together and
per tier. Each counter expires after its window, so a new minute, hour or day starts afresh.

Before a call, its worst case (the prompt's size and the most output a provider may return) is
reserved atomically against every limit; a call that could pass a limit is not made, so spend
never passes the hard cap. After the call the reservation is settled to the reported usage.

As spend approaches the tightest limit, a tier goes down the degradation ladder, and back up as
soon as spend falls below a rung's threshold again:

1. stretch_cadence — the least important NPCs wait longer between routine steps;
2. wide_cache — decisions are cached longer, under coarser situation keys;
3. cheapest_model — routine decisions go to the cheapest configured model first;
4. offline_below_importance — routine decisions of the least important NPCs go to the offline policy;
5. hard_cap — every decision and every reply is made by the offline policy.

Player dialogue is only ever affected by the hard cap.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

import redis.asyncio as redis

from aiworld.config import BudgetLimits, BudgetSettings
from aiworld.store.keys import Keys, text_of

TIERS = ("routine", "dialogue", "world", "reflection", "coherence")
ALL = "all"
# Each budget dimension, the window its counter covers (seconds) and how long the counter lives.
DIMENSIONS = (("calls", 60), ("tokens", 3600), ("money", 86_400))
DIMENSION_NAMES = {"calls": "calls/minute", "tokens": "tokens/hour", "money": "money/day"}
LADDER_HISTORY_KEPT = 200


class Rung(IntEnum):
    NORMAL = 0
    STRETCH_CADENCE = 1
    WIDE_CACHE = 2
    CHEAPEST_MODEL = 3
    OFFLINE_BELOW_IMPORTANCE = 4
    HARD_CAP = 5

    @property
    def label(self) -> str:
        return self.name.lower()


class BudgetExhausted(Exception):
    """The call could take spend past a limit: it is not made."""


@dataclass(frozen=True)
class Standing:
    """Where a tier stands now: its rung, its spend as a share of its tightest limit, and why."""

    tier: str
    rung: Rung
    pressure: float
    why: str


@dataclass(frozen=True)
class Reservation:
    tier: str
    keys: tuple[str, ...]  # the six counters reserved on, in the windows of the reservation
    tokens: int
    money: float


# KEYS: calls, tokens, money of all tiers, then of the tier. ARGV[1..6] their limits (0: none),
# ARGV[7..9] calls, tokens, money wanted, ARGV[10..12] each dimension's counter lifetime.
# Returns 0 when reserved, otherwise the 1-based index of the counter that would pass its limit.
_RESERVE = """
for i = 1, 6 do
  local limit = tonumber(ARGV[i])
  if limit > 0 then
    local current = tonumber(redis.call('GET', KEYS[i]) or '0')
    if current + tonumber(ARGV[7 + (i - 1) % 3]) > limit then return i end
  end
end
for i = 1, 6 do
  redis.call('INCRBYFLOAT', KEYS[i], ARGV[7 + (i - 1) % 3])
  redis.call('EXPIRE', KEYS[i], ARGV[10 + (i - 1) % 3])
end
return 0
"""

# KEYS: tokens and money of all tiers, then of the tier (the reservation's windows).
# ARGV: token and money corrections (actual minus reserved), the two counters' lifetimes.
_SETTLE = """
for i = 1, 4 do
  local delta = ARGV[1 + (i - 1) % 2]
  if tonumber(delta) ~= 0 then
    redis.call('INCRBYFLOAT', KEYS[i], delta)
    redis.call('EXPIRE', KEYS[i], ARGV[3 + (i - 1) % 2])
  end
end
return 0
"""

# KEYS[1] ladder hash, KEYS[2] history stream. ARGV: tier, rung level, rung label, pressure, now
# (ISO), why, history cap. Records the rung, and since when and why, only when it changed.
_NOTE = """
local before = redis.call('HGET', KEYS[1], ARGV[1] .. '.rung')
redis.call('HSET', KEYS[1], ARGV[1] .. '.pressure', ARGV[4])
if before == ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1] .. '.rung', ARGV[2], ARGV[1] .. '.since', ARGV[5], ARGV[1] .. '.why', ARGV[6])
if before or ARGV[2] ~= '0' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'tier', ARGV[1], 'rung', ARGV[3],
    'from', before or '0', 'at', ARGV[5], 'why', ARGV[6])
end
return 1
"""


class BudgetGovernor:
    def __init__(
        self, settings: BudgetSettings, store: redis.Redis, keys: Keys, clock: Callable[[], float] = time.time
    ) -> None:
        self._settings = settings
        self._store = store
        self._keys = keys
        self._clock = clock
        self._reserve = store.register_script(_RESERVE)
        self._settle = store.register_script(_SETTLE)
        self._note = store.register_script(_NOTE)

    @property
    def settings(self) -> BudgetSettings:
        return self._settings

    def _counters(self, scope: str, now: float) -> list[str]:
        return [self._keys.llm_spend(scope, dimension, int(now // window)) for dimension, window in DIMENSIONS]

    def _limits(self, scope: str) -> list[float]:
        if not self._settings.enabled:
            return [0.0, 0.0, 0.0]
        limits = self._settings.overall if scope == ALL else self._settings.tiers.get(scope[5:], BudgetLimits())
        return [float(value or 0) for value in (limits.calls_per_minute, limits.tokens_per_hour, limits.money_per_day)]

    def _scopes(self, tier: str) -> tuple[str, str]:
        return ALL, f"tier:{tier}"

    async def spent(self, tier: str | None = None) -> dict[str, float]:
        """This window's calls, tokens and money of a tier, or of all tiers together."""
        values = await self._store.mget(self._counters(ALL if tier is None else f"tier:{tier}", self._clock()))
        return {
            dimension: float(text_of(value)) if value else 0.0
            for (dimension, _), value in zip(DIMENSIONS, values, strict=True)
        }

    async def standing(self, tier: str) -> Standing:
        """The tier's rung now, from the spend of every window against every limit that binds it.
        A change of rung is recorded (since when, why) for the API, `/metrics` and the history."""
        now = self._clock()
        scopes = self._scopes(tier)
        counters = [key for scope in scopes for key in self._counters(scope, now)]
        values = await self._store.mget(counters)
        limits = [limit for scope in scopes for limit in self._limits(scope)]
        pressure, why = 0.0, "within budget"
        for index, (value, limit) in enumerate(zip(values, limits, strict=True)):
            if not limit:
                continue
            share = (float(text_of(value)) if value else 0.0) / limit
            if share > pressure:
                scope = "all tiers" if index < 3 else f"tier {tier}"
                dimension = DIMENSIONS[index % 3][0]
                pressure = share
                why = f"{scope}: {DIMENSION_NAMES[dimension]} at {share:.0%} of {limit:g}"
        rung = self._rung_for(pressure)
        if rung is Rung.NORMAL:
            why = f"within budget ({why})" if pressure else "within budget"
        await self._note(
            keys=[self._keys.llm_ladder(), self._keys.llm_ladder_history()],
            args=[
                tier,
                int(rung),
                rung.label,
                round(pressure, 4),
                datetime.fromtimestamp(now, UTC).isoformat(),
                why,
                LADDER_HISTORY_KEPT,
            ],
        )
        return Standing(tier=tier, rung=rung, pressure=pressure, why=why)

    def _rung_for(self, pressure: float) -> Rung:
        settings = self._settings
        if pressure >= 1.0:
            return Rung.HARD_CAP
        thresholds = [
            (settings.offline_below_importance_at, Rung.OFFLINE_BELOW_IMPORTANCE),
            (settings.cheapest_model_at, Rung.CHEAPEST_MODEL),
            (settings.widen_cache_at, Rung.WIDE_CACHE),
            (settings.stretch_cadence_at, Rung.STRETCH_CADENCE),
        ]
        return next((rung for threshold, rung in thresholds if pressure >= threshold), Rung.NORMAL)

    async def reserve(self, tier: str, tokens: int, money: float) -> Reservation:
        """Take one call of at most `tokens` costing at most `money` from every budget of the tier,
        or raise BudgetExhausted when any of them would pass its limit."""
        now = self._clock()
        scopes = self._scopes(tier)
        counters = [key for scope in scopes for key in self._counters(scope, now)]
        limits = [limit for scope in scopes for limit in self._limits(scope)]
        refused = int(
            await self._reserve(
                keys=counters,
                args=[*limits, 1, tokens, repr(money), *(window * 2 for _, window in DIMENSIONS)],
            )
        )
        if refused:
            scope = "all tiers" if refused <= 3 else f"tier {tier}"
            dimension = DIMENSIONS[(refused - 1) % 3][0]
            raise BudgetExhausted(
                f"hard cap: {scope} would pass {DIMENSION_NAMES[dimension]} {limits[refused - 1]:g} with this call"
            )
        return Reservation(tier=tier, keys=tuple(counters), tokens=tokens, money=money)

    async def settle(self, reservation: Reservation, tokens: int, money: float) -> None:
        """Correct a reservation to what the provider reported; a failed call settles at zero
        (its call still counts against calls per minute)."""
        keys = reservation.keys
        await self._settle(
            keys=[keys[1], keys[2], keys[4], keys[5]],
            args=[
                tokens - reservation.tokens,
                repr(money - reservation.money),
                DIMENSIONS[1][1] * 2,
                DIMENSIONS[2][1] * 2,
            ],
        )

    async def report(self) -> dict[str, Any]:
        """What `GET /ai/llm/budget` shows: limits, this window's spend, each tier's rung (since
        when, why) and the latest rung changes."""
        settings = self._settings
        tiers = list(dict.fromkeys([*TIERS, *settings.tiers]))
        standings = {tier: await self.standing(tier) for tier in tiers}
        ladder = {text_of(k): text_of(v) for k, v in (await self._store.hgetall(self._keys.llm_ladder())).items()}
        history = await self._store.xrevrange(self._keys.llm_ladder_history(), count=20)
        hard_capped = sorted(tier for tier, standing in standings.items() if standing.rung is Rung.HARD_CAP)
        if hard_capped:
            message = (
                f"hard cap reached for {', '.join(hard_capped)}: every decision and reply of "
                f"{'these tiers' if len(hard_capped) > 1 else 'this tier'} is made by the offline policy "
                "until spend falls below the limit"
            )
        elif any(standing.rung for standing in standings.values()):
            message = "spend is near the budget: the degradation ladder is in use"
        else:
            message = "within budget"
        return {
            "enabled": settings.enabled,
            "offline": bool(hard_capped),
            "hard_capped_tiers": hard_capped,
            "message": message,
            "limits": {
                "overall": settings.overall.model_dump(),
                "tiers": {tier: limits.model_dump() for tier, limits in settings.tiers.items()},
            },
            "spend": {"overall": await self.spent(), "tiers": {tier: await self.spent(tier) for tier in tiers}},
            "ladder": {
                tier: {
                    "rung": standing.rung.label,
                    "level": int(standing.rung),
                    "pressure": round(standing.pressure, 4),
                    "since": ladder.get(f"{tier}.since"),
                    "why": ladder.get(f"{tier}.why", standing.why),
                }
                for tier, standing in standings.items()
            },
            "thresholds": {
                Rung.STRETCH_CADENCE.label: settings.stretch_cadence_at,
                Rung.WIDE_CACHE.label: settings.widen_cache_at,
                Rung.CHEAPEST_MODEL.label: settings.cheapest_model_at,
                Rung.OFFLINE_BELOW_IMPORTANCE.label: settings.offline_below_importance_at,
                Rung.HARD_CAP.label: 1.0,
            },
            "changes": [{text_of(k): text_of(v) for k, v in (fields or {}).items()} for _, fields in history or []],
        }
