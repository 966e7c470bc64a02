"""CoherenceCheckWorkflow: one run of the coherence monitor, started by the `world-coherence`
schedule. Each check is an activity of its own (visible, retried, bounded); a check that fails
for good is reported as such and the others still run; the report is kept for the API and shown
as the run's details and result in the Temporal UI."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from activities.coherence_activities import CoherenceActivities
    from aiworld.world.coherence import CHECKS, CheckRequest, CheckResult, CoherenceReport

# A check reads every NPC of the world once (a query each for the living): minutes for thousands.
CHECK_TIMEOUT = timedelta(minutes=5)
SAVE_TIMEOUT = timedelta(seconds=10)
CHECK_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=3)
SAVE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5)


@workflow.defn(name="CoherenceCheckWorkflow")
class CoherenceCheckWorkflow:
    @workflow.run
    async def run(self) -> CoherenceReport:
        info = workflow.info()
        run_key = hashlib.sha256(info.run_id.encode()).hexdigest()[:12]
        started_at = workflow.now()
        results: list[CheckResult] = []
        for name in CHECKS:
            try:
                result = await workflow.execute_activity_method(
                    CoherenceActivities.run_coherence_check,
                    CheckRequest(name=name, run_key=run_key),
                    start_to_close_timeout=CHECK_TIMEOUT,
                    retry_policy=CHECK_RETRY,
                )
            except FailureError as error:
                workflow.logger.warning("coherence check %s failed: %s", name, error)
                result = CheckResult(name=name, error=str(error.cause or error)[:300])
            results.append(result)
            workflow.set_current_details(f"Checking… {len(results)}/{len(CHECKS)} done; last: {name}")
        report = CoherenceReport(run_id=info.run_id, started_at=started_at, finished_at=workflow.now(), checks=results)
        try:
            await workflow.execute_activity_method(
                CoherenceActivities.save_coherence_report,
                report,
                start_to_close_timeout=SAVE_TIMEOUT,
                retry_policy=SAVE_RETRY,
            )
        except FailureError as error:  # the run's result still holds the report
            workflow.logger.warning("coherence report not saved: %s", error)
        workflow.set_current_details(report.summary())
        return report
