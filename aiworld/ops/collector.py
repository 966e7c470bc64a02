"""Python's full garbage collections on a schedule, instead of whenever the heap grew by a quarter.

A 1,000-NPC worker holds most of a million objects the collector tracks: the NPCs' states in the
workflow cache, and the thousands of model classes the LLM SDKs define at import. A full
collection walks all of them holding the GIL, so every NPC and every player's line in the process
stops for its length. Measured on the 1,000-NPC benchmark at 50 events/s: one every 25 s, 0.2 s
at start and 0.7 s by minute 4 (growing with the states), freeing 0 to 600 objects each time: the
players' lines' p99 was those pauses.

So a worker process, once it is up and before its NPCs fill the workflow cache, freezes what it
has built (imports, models, clients: never garbage, never walked again), turns Python's automatic full collections off and runs one every
`worker.full_gc_interval_seconds`. Young collections, which find nearly all the garbage, run as
before; the little garbage that reaches the oldest generation waits for the next scheduled one.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger(__name__)

# A threshold no count of young collections reaches: the oldest generation is collected only
# when `collect_fully_every` does it.
NEVER = 2**31 - 1


def freeze_and_defer_full_collections() -> None:
    """Freeze every object alive now and stop automatic full collections (young ones go on)."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, NEVER)
    log.info(
        "garbage collection: %d objects built at start frozen, full collections on schedule", gc.get_freeze_count()
    )


async def collect_fully_every(interval: float) -> None:
    """A full collection every `interval` seconds, logged with its pause, until cancelled."""
    while True:
        await asyncio.sleep(interval)
        began = time.perf_counter()
        freed = gc.collect()
        log.info("full garbage collection: %.0f ms, %d objects freed", (time.perf_counter() - began) * 1000, freed)
