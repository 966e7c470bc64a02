"""A token bucket per provider in the state store, shared by every worker process.

Two budgets refill continuously: requests per minute and tokens per minute. The bucket holds one
second's worth of each, so a burst is spread over time rather than sent at once and refused with
429s. A caller that finds it empty waits for exactly as long as the refill needs.
"""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as redis

from aiworld.store.keys import Keys

# KEYS[1] bucket; ARGV: now_ms, requests/min, tokens/min, tokens wanted.
# Returns 0 when taken, otherwise the milliseconds to wait before asking again.
_TAKE = """
local now = tonumber(ARGV[1])
local rpm, tpm, want = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local req_cap, tok_cap = math.max(1, rpm / 60), math.max(want, tpm / 60)
local state = redis.call('HMGET', KEYS[1], 'requests', 'tokens', 'at')
local requests, tokens, at = tonumber(state[1]) or req_cap, tonumber(state[2]) or tok_cap, tonumber(state[3]) or now
local elapsed = math.max(0, now - at)
requests = math.min(req_cap, requests + elapsed * rpm / 60000)
tokens = math.min(tok_cap, tokens + elapsed * tpm / 60000)
local wait = 0
if requests < 1 then wait = math.max(wait, (1 - requests) * 60000 / rpm) end
if tokens < want then wait = math.max(wait, (want - tokens) * 60000 / tpm) end
if wait == 0 then
  requests = requests - 1
  tokens = tokens - want
end
redis.call('HSET', KEYS[1], 'requests', requests, 'tokens', tokens, 'at', now)
redis.call('PEXPIRE', KEYS[1], 120000)
return math.ceil(wait)
"""


class TokenBucket:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._keys = keys
        self._take = client.register_script(_TAKE)

    async def acquire(self, provider: str, requests_per_minute: int, tokens_per_minute: int, tokens: int) -> float:
        """Wait until the provider's budget allows one request of `tokens`; returns seconds waited."""
        waited = 0.0
        while True:
            wait_ms = int(
                await self._take(
                    keys=[self._keys.llm_bucket(provider)],
                    args=[int(time.time() * 1000), requests_per_minute, tokens_per_minute, tokens],
                )
            )
            if wait_ms <= 0:
                return waited
            await asyncio.sleep(wait_ms / 1000)
            waited += wait_ms / 1000
