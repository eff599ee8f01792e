"""``gpupipe retry``'s write: a failed step back to pending with a fresh retry budget."""

from __future__ import annotations

from pipeline_core.dynamo.expressions import Update, Value
from pipeline_core.dynamo.table import Table, Write
from pipeline_core.jobs import JobStatus, StepState
from pipeline_core.jobstore.reads import Reads
from pipeline_core.jobstore.updates import touched
from pipeline_core.protocol.decisions import OnRetry, on_retry
from pipeline_core.protocol.guards import failed, no_item, not_done_nor_held, step_exists
from pipeline_core.records import JOB, SEGMENT, StepAt, job_key, segment_identity, segment_key


class Retries:
    def __init__(self, table: Table, reads: Reads):
        self.table = table
        self.reads = reads

    def retry_step(self, job_id: str, step: str, now: float) -> bool:
        """failed -> pending with a fresh retry budget; the job runs again. True when this call moved it.

        ``attempts`` stays: it only ever grows (it fences claims). The router sees the step go failed -> pending on
        the stream and sends it to the step's queue. A split step keeps its segments: those done stay done; every
        other segment no live holder runs goes back to pending with a fresh budget and no message (each its own
        conditional write, ``retried_at`` recorded on it), so the step's message resumes them (``Refusal.SPLIT``)
        and nothing done is redone. A segment a live worker holds is left to it: its holder commits (its count lands
        on the step) or loses its lease, after which its message takes it over. The segments are written first, then
        the step: a retry interrupted between them leaves the step failed, and is simply run again.
        """
        job = self.reads.job(job_id)
        record = job.step(step) if job is not None else None
        decision = on_retry(record)
        if job is None or record is None or decision == OnRetry.NOT_FAILED:
            return False
        if decision == OnRetry.SPLIT and record.plan is not None:  # each segment: decisions.segment_reset_on_retry, as a guard
            for index in range(record.plan.count):
                reset = (
                    Update().set_all({SEGMENT.state: StepState.PENDING, SEGMENT.failures: 0, SEGMENT.retried_at: Value("now", now)})
                    + segment_identity(job, job_id, step, index)
                ).remove(SEGMENT.error, SEGMENT.finished_at, SEGMENT.worker_id, SEGMENT.lease_expires_at, SEGMENT.message_id)
                self.table.update_if(Write(segment_key(job_id, step, index), reset, no_item() | not_done_nor_held(SEGMENT, now)))
        at = StepAt(step)
        update = (
            Update().set_all({at.state: StepState.PENDING, at.failures: 0, at.retried_at: Value("now", now), JOB.status: JobStatus.RUNNING})
            + touched(now)
        ).remove(at.error, at.finished_at, at.worker_id, at.lease_expires_at, at.message_id, at.carrier)
        return self.table.update_if(Write(job_key(job_id), update, step_exists(at) & failed(at)))
