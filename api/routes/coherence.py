"""`GET /ai/world/coherence`: the coherence monitor's last report."""

from __future__ import annotations

from collections.abc import Callable

import redis.asyncio as redis
from fastapi import APIRouter, status

from aiworld.store.keys import Keys
from aiworld.world.coherence import CoherenceReport
from api.errors import ApiError, within

STORE_WAIT_SECONDS = 3.0


def install(router: APIRouter, keys: Keys, store: Callable[[], redis.Redis]) -> None:
    @router.get("/ai/world/coherence", response_model=CoherenceReport, tags=["world"])
    async def coherence_report() -> CoherenceReport:
        """The last run of the `world-coherence` schedule: per check, how many things broke the
        invariant, how many were repaired, what was only reported, and examples."""
        raw = await within(STORE_WAIT_SECONDS, store().get(keys.coherence_report()), "the state store")
        if raw is None:
            raise ApiError(status.HTTP_404_NOT_FOUND, "no coherence check has run yet (schedule world-coherence)")
        return CoherenceReport.model_validate_json(raw)
