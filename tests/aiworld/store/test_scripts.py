"""Batches of one script on the real Redis: answers in order, and a store that does not know the
script (never loaded, or restarted since) gets it loaded and the batch run once more."""

from __future__ import annotations

import uuid

from aiworld.store.scripts import run_script_batch

# Sets a key once and says whether this call set it: running the batch again is harmless.
_SET_ONCE = """
-- {tag}
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 1 end
return 0
"""


def fresh_script(client):
    """A script whose text the server has never seen: its first batch meets NOSCRIPT."""
    return client.register_script(_SET_ONCE.replace("{tag}", uuid.uuid4().hex))


async def test_a_script_the_store_does_not_know_is_loaded_and_the_batch_runs(redis_client, keys):
    script = fresh_script(redis_client)
    assert await redis_client.script_exists(script.sha) == [False]

    answers = await run_script_batch(
        redis_client, script, [([f"{keys.prefix}a"], ["1"]), ([f"{keys.prefix}b"], ["2"]), ([f"{keys.prefix}a"], ["3"])]
    )

    assert answers == [1, 1, 0]  # the third found the first's key: each call ran once, in order
    assert await redis_client.script_exists(script.sha) == [True]
    assert await redis_client.mget(f"{keys.prefix}a", f"{keys.prefix}b") == ["1", "2"]


async def test_an_empty_batch_answers_nothing_and_a_known_script_runs_again(redis_client, keys):
    script = fresh_script(redis_client)
    assert await run_script_batch(redis_client, script, []) == []
    assert await redis_client.script_exists(script.sha) == [False]  # nothing was sent

    assert await run_script_batch(redis_client, script, [([f"{keys.prefix}c"], ["1"])]) == [1]
    assert await run_script_batch(redis_client, script, [([f"{keys.prefix}c"], ["2"])]) == [0]
    assert await redis_client.get(f"{keys.prefix}c") == "1"
