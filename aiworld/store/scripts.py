"""Several runs of one Lua script in a single round trip to the state store.

A decision writes a handful of records (memories, relationship changes, actions, feed entries),
each through an idempotent script. One round trip per record cost a worker about 130 µs of CPU
each (redis-py's per-call work) and put every record's wait on the event loop in a row; in a
pipeline the same records cost about a quarter of that. redis-py's own pipelines ask the server
for each script first (SCRIPT EXISTS, one more round trip on every call): here the scripts are
sent by hash, and loaded only when the server answers that it does not know them (a restarted
store). Each script is safe to run again, so running the batch again after loading it is too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as redis
from redis.client import NEVER_DECODE
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

ScriptCall = tuple[Sequence[str], Sequence[Any]]


async def run_script_batch(client: redis.Redis, script: AsyncScript, calls: Sequence[ScriptCall]) -> list[Any]:
    """The script's answer for each (keys, args) call, in order, from one round trip (two more,
    once, when the store had forgotten the script)."""
    if not calls:
        return []
    try:
        return await _run(client, script, calls)
    except NoScriptError:
        script.sha = await client.script_load(script.script)
        return await _run(client, script, calls)


async def _run(client: redis.Redis, script: AsyncScript, calls: Sequence[ScriptCall]) -> list[Any]:
    async with client.pipeline(transaction=False) as pipe:
        for keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        return await pipe.execute()


async def run_script_undecoded(
    client: redis.Redis, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]
) -> Any:
    """The script's answer as the server sent it (bytes, never decoded to text, whatever the
    client decodes): for answers that carry binary values such as vectors."""
    try:
        return await client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args, **{NEVER_DECODE: True})
    except NoScriptError:
        script.sha = await client.script_load(script.script)
        return await client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args, **{NEVER_DECODE: True})
