"""Activities of the coherence monitor: one check at a time, and keeping the run's report.

Each check is safe to run twice: its repairs are idempotent (action ids carry the run's key,
corrections carry an id derived from the fact, clamping a clamped value changes nothing).
"""

from __future__ import annotations

from temporalio import activity

from aiworld.world.coherence import CheckRequest, CheckResult, CoherenceMonitor, CoherenceReport


class CoherenceActivities:
    def __init__(self, monitor: CoherenceMonitor) -> None:
        self._monitor = monitor

    @activity.defn
    async def run_coherence_check(self, request: CheckRequest) -> CheckResult:
        return await self._monitor.run_check(request)

    @activity.defn
    async def save_coherence_report(self, report: CoherenceReport) -> None:
        await self._monitor.save_report(report)

    def all(self) -> list:
        return [self.run_coherence_check, self.save_coherence_report]
