"""``gpupipe retry``'s write: a failed step back to pending with a fresh retry budget."""

from __future__ import annotations

from pipeline_core.dynamo.expressions import Cond, Update, Value
from pipeline_core.dynamo.table import Table, Write
from pipeline_core.jobs import JobStatus, StepState
from pipeline_core.jobstore.reads import Reads
from pipeline_core.jobstore.updates import touched
from pipeline_core.protocol.decisions import OnRetry, on_retry
from pipeline_core.protocol.guards import failed, finished, job_ended, no_item, not_done_nor_held, not_held, step_exists
from pipeline_core.records import JOB, SEGMENT, JobRecord, StepAt, job_key, segment_identity, segment_key


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
        if decision == OnRetry.SPLIT:  # each segment: decisions.segment_reset_on_retry, as a guard
            self._reset_segments(job, step, now, not_done_nor_held(SEGMENT, now))
        at = StepAt(step)
        update = (
            Update().set_all({at.state: StepState.PENDING, at.failures: 0, at.retried_at: Value("now", now), JOB.status: JobStatus.RUNNING})
            + touched(now)
        ).remove(at.error, at.finished_at, at.worker_id, at.lease_expires_at, at.message_id, at.carrier)
        return self.table.update_if(Write(job_key(job_id), update, step_exists(at) & failed(at)))

    def retry_from(self, job_id: str, step: str, now: float) -> tuple[str, ...]:
        """``gpupipe retry --from STEP``: run ``step`` and every step downstream of it again, keeping the results
        upstream of it. The job must have ended; ``step`` must be done or failed. ``step`` goes back to pending (the
        router sends it), its downstream steps to waiting (each is queued again when its parents succeed), each with
        a fresh budget and its split forgotten; their segments no live worker holds are put back to pending with no
        message, done or not (each its own conditional write, first). A worker still running one of them (a branch
        of a failed job) loses its claim: its commit is refused. The steps moved, in list order ((): none).
        """
        job = self.reads.job(job_id)
        if job is None or job.step(step) is None:
            return ()
        moved = (step, *job.graph.downstream(step))
        for name in moved:
            self._reset_segments(job, name, now, not_held(SEGMENT, now))
        update = touched(now).set(JOB.status, JobStatus.RUNNING)
        for index, name in enumerate(moved):
            at = StepAt(name, "step" if index == 0 else f"down{index}")
            state = StepState.PENDING if index == 0 else StepState.WAITING
            update = (update + Update().set_all({at.state: state, at.failures: 0, at.retried_at: Value("now", now)})).remove(*at.last_run())
        at = StepAt(step)
        applied = self.table.update_if(Write(job_key(job_id), update, job_ended() & step_exists(at) & finished(at)))
        return moved if applied else ()

    def _reset_segments(self, job: JobRecord, step: str, now: float, resettable: Cond) -> None:
        """Each segment of a split ``step`` that ``resettable`` allows (or that has no item yet) back to pending with a
        fresh budget and no message, each its own conditional write; a segment held or kept is left as it is."""
        record = job.step(step)
        if record is None or record.plan is None:
            return
        for index in range(record.plan.count):
            reset = (
                Update().set_all({SEGMENT.state: StepState.PENDING, SEGMENT.failures: 0, SEGMENT.retried_at: Value("now", now)})
                + segment_identity(job, job.job_id, step, index)
            ).remove(*SEGMENT.last_run())
            self.table.update_if(Write(segment_key(job.job_id, step, index), reset, no_item() | resettable))
