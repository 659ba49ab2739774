"""The delivery protocol of one message: a redelivery of an answered message is done
already, two deliveries never test one job at once (the run lease), and the starts of
an attempt are counted so a job whose process keeps dying is failed, not looped."""

from __future__ import annotations

import logging
from collections.abc import Callable

from worker.pipeline.announce import already_done
from worker.pipeline.context import GateResult
from worker.pipeline.job_run import JobRun
from worker.pipeline.lease import Answered, Busy, take_lease
from worker.pipeline.outcome import tool_error

logger = logging.getLogger("testgate.runner")


def under_lease(run: JobRun, body: Callable[[], GateResult]) -> GateResult:
    """Run `body` under the job's lock so two deliveries never test it at once, unless
    the message was answered, another message is running the job, or this attempt was
    started more often than the budget allows."""
    job, state, settings = run.job, run.ctx.state, run.settings
    if state.answered(run.delivery_id):  # a redelivery of an answered message
        return already_done(job, run.ctx, run.delivery_id)
    # The request: the same task at the same commit (or branch) runs once at a time.
    lock_key = f"{job.task_id}:{job.commit or job.branch}"
    lease = take_lease(state, lock_key, run.answer.owner, settings.lease_s)
    if isinstance(lease, Answered):
        return already_done(job, run.ctx, run.delivery_id)
    if isinstance(lease, Busy):
        # A request that overlaps a running one coalesces into it. The running
        # message is acked only when it ends, so dropping this one loses nothing.
        state.bump("redelivered")
        logger.warning(
            "duplicate of task %s ignored: delivery %s is running it", job.task_id, lease.holder
        )
        return GateResult("duplicate", f"delivery {lease.holder} is already running this job")
    try:
        # Every start of this attempt is counted: a start beyond the budget means
        # the process running it died each time (OOM killer, a suite that kills
        # its worker), and running it again would loop forever.
        starts = state.count_delivery(f"{run.delivery_id}:{run.attempt}")
        run.redelivered = starts > 1 or run.attempt > 0
        if starts > settings.max_deliveries:
            why = (
                f"the process running it died {starts - 1} times (killed by the "
                "OOM killer or by the suite itself)"
            )
            return tool_error(run, why, None, final=True)
        return body()
    finally:
        lease.stop()
