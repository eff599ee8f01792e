"""Claims: a worker takes a step (or a segment, or a split step's merge) for one attempt, and only the holder of that
attempt can extend, finish, fail or release it.

A step is claimed only while pending, or running under an expired lease (a takeover, which counts a failure against
the retry budget: the attempt before ended with no answer). A refused claim raises ``ClaimRefused`` with the reason,
classified (``decisions.classify_refusal``) from the item as the refused write found it: DynamoDB returns it with
the refusal, so nothing is read again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pipeline_core.dynamo.expressions import Update, Value
from pipeline_core.dynamo.table import ConditionFailed, Table, TransactionRefused, Write
from pipeline_core.jobs import JobStatus, ObjectRef, StepState
from pipeline_core.jobstore.updates import claimed, failures_counted, let_go, record_done, record_failed, step_and_job_failed, touched
from pipeline_core.protocol.decisions import Refusal, classify_refusal, may_take_over
from pipeline_core.protocol.guards import (
    every_segment_done,
    holds_claim,
    job_open,
    lease_expired,
    no_item,
    no_live_merge,
    other_unfinished,
    others_done,
    pending,
    step_exists,
    step_running,
    whole,
)
from pipeline_core.records import (
    JOB,
    SEGMENT,
    JobRecord,
    RecordAt,
    SegmentRecord,
    StepAt,
    claimed_job_item,
    job_key,
    parse_job,
    segment_identity,
    segment_key,
)
from pipeline_core.segment_plan import Segment


@dataclass(frozen=True)
class Claim:
    """A worker's hold on one step of one job (or one segment of a split step), for one attempt."""

    job_id: str
    step: str
    worker_id: str
    attempt: int  # the fencing token: every claim of a step (or segment) gets a new, higher number
    step_names: tuple[str, ...]
    failures: int = 0  # transient failures counted against the step's retry budget before this attempt
    segment: int | None = None  # the claim holds this segment of a split step (its own item)
    merging: bool = False  # the claim holds a split step whose segments are all done, to merge them
    span: Segment | None = None  # the claimed segment's range, from the plan the job item records
    message_id: str = ""  # the message (its chain's origin id) the claim was made through
    retried_at: float | None = None  # when `gpupipe retry` last put the claimed step back, as the claim found it
    job: JobRecord | None = None  # the job as the claim left it (its other steps' states, its parents' results)

    @property
    def others(self) -> tuple[str, ...]:
        """The job's other steps."""
        return tuple(name for name in self.step_names if name != self.step)

    @property
    def key(self) -> dict[str, str]:
        """The key of the item the claim holds: the job's, or the segment's own."""
        return job_key(self.job_id) if self.segment is None else segment_key(self.job_id, self.step, self.segment)

    @property
    def at(self) -> RecordAt:
        """Where the claimed record lives in its item."""
        return StepAt(self.step) if self.segment is None else SEGMENT

    @property
    def label(self) -> str:
        return self.step if self.segment is None else f"{self.step} segment {self.segment}"


class ClaimRefused(Exception):
    """A claim was refused: ``reason`` says why; ``job`` and ``segment`` are the records as the refusal found them."""

    def __init__(self, reason: Refusal, job: JobRecord | None, segment: SegmentRecord | None = None):
        super().__init__(reason.value)
        self.reason = reason
        self.job = job
        self.segment = segment


class ClaimLost(Exception):
    """The claim is no longer ours (its lease expired and another worker took the step)."""

    @classmethod
    def of(cls, claim: Claim) -> ClaimLost:
        return cls(f"{claim.job_id}/{claim.label} attempt {claim.attempt} is no longer held by {claim.worker_id}")


def holder_write(claim: Claim, update: Update) -> Write:
    """``update`` of the claim's item, made only while ``claim`` is held (its record, worker and attempt)."""
    return Write(claim.key, update, holds_claim(claim.at, claim.worker_id, claim.attempt))


def _refused(job: JobRecord | None, step: str, message_id: str, merging: bool = False) -> ClaimRefused:
    record = job.step(step) if job is not None else None
    return ClaimRefused(classify_refusal(record, message_id, has_job=job is not None, merging=merging), job)


def _merge_claimed(at: StepAt, worker_id: str, message_id: str, now: float, lease_seconds: float, max_attempts: int) -> Update:
    message = Value("message", message_id)
    update = Update().set_all(
        {
            at.attempts: at.attempts.plus(1),
            at.worker_id: Value("worker", worker_id),
            at.message_id: message,
            at.carrier: message,
            at.lease_expires_at: Value("lease", now + lease_seconds),
            at.merge_started_at: Value("now", now),
            at.max_attempts: Value("max_attempts", max_attempts),
        }
    )
    return update + touched(now)


def _let_go_state(claim: Claim) -> StepState:
    """What a record let go of becomes: pending, but a merge's step stays running (its segments are done)."""
    return StepState.RUNNING if claim.merging else StepState.PENDING


class Claims:
    def __init__(self, table: Table):
        self.table = table

    def create_claimed(self, obj: ObjectRef, step: str, worker_id: str, message_id: str, now: float, lease_seconds: float) -> Claim | None:
        """Create the job of a one-step pipeline with its step already claimed, in one conditional put: ``create_job``
        then ``claim`` (pending -> running, attempt 1) as one write. None, writing nothing, when the job exists (the
        caller then claims it as usual: a redelivery, or a duplicate event).

        The item is the one those two writes leave: a new job passes every guard of the claim (open, whole, pending).
        """
        item = claimed_job_item(obj, step, worker_id, message_id, now, lease_seconds)
        try:
            self.table.put(item, no_item())
        except ConditionFailed:
            return None
        job = JobRecord.parse(item)
        return Claim(job_id=obj.job_id, step=step, worker_id=worker_id, attempt=1, step_names=(step,), message_id=message_id, job=job)

    def claim(
        self,
        job_id: str,
        step: str,
        worker_id: str,
        message_id: str,
        now: float,
        lease_seconds: float,
        segment: int | None = None,
        job: JobRecord | None = None,
    ) -> Claim:
        """pending -> running (or running under an expired lease -> running), for this worker.

        With ``segment``, the same transition on that segment's own item, while its step runs (``job``: the job as
        the caller read it, else it is read). A split step itself is never claimed whole again: its step message,
        or a retry's, resumes the segments (``Refusal.SPLIT``). Raises ClaimRefused with the reason.
        """
        if segment is not None:
            return self._claim_segment(job_id, step, worker_id, message_id, now, lease_seconds, segment, job)
        at = StepAt(step)
        base = step_exists(at) & job_open() & whole(at)
        update = claimed(at, worker_id, message_id, now, lease_seconds).set(JOB.status, JobStatus.RUNNING) + touched(now)
        key = job_key(job_id)
        try:
            item = self.table.update(Write(key, update + failures_counted(at, False), base & pending(at)), returns_new=True)
        except ConditionFailed as refused:
            found = parse_job(refused.old)
            if not may_take_over(found.step(step) if found else None, now):
                raise _refused(found, step, message_id) from None
            try:
                item = self.table.update(Write(key, update + failures_counted(at, True), base & lease_expired(at, now)), returns_new=True)
            except ConditionFailed as again:
                raise _refused(parse_job(again.old), step, message_id) from None
        record = JobRecord.parse(item)
        claimed_step = record.steps[step]
        return Claim(
            job_id=job_id,
            step=step,
            worker_id=worker_id,
            attempt=claimed_step.attempts,
            step_names=record.step_names,
            failures=claimed_step.failures,
            message_id=message_id,
            retried_at=claimed_step.retried_at,
            job=record,
        )

    def _claim_segment(
        self,
        job_id: str,
        step: str,
        worker_id: str,
        message_id: str,
        now: float,
        lease_seconds: float,
        index: int,
        job: JobRecord | None,
    ) -> Claim:
        """A segment's own item pending (or absent: nothing recorded yet) or running under an expired lease -> running.

        Its step must run: read first (a consistent read) unless the caller passes it. A step failed between that
        read and the claim costs at most the segment's work: its count is recorded on a failed step, which
        ``gpupipe retry`` keeps.
        """
        if job is None:
            job = parse_job(self.table.get(job_key(job_id)))
        record = job.step(step) if job is not None else None
        plan = record.plan if record is not None else None
        if (
            job is None
            or record is None
            or plan is None
            or not 0 <= index < plan.count
            or record.state != StepState.RUNNING
            or record.job_status != JobStatus.RUNNING
        ):
            raise ClaimRefused(classify_refusal(record, message_id, SegmentRecord(index), has_job=job is not None), job)
        update = claimed(SEGMENT, worker_id, message_id, now, lease_seconds) + segment_identity(job, job_id, step, index)
        key = segment_key(job_id, step, index)
        try:
            item = self.table.update(Write(key, update + failures_counted(SEGMENT, False), no_item() | pending(SEGMENT)), returns_new=True)
        except ConditionFailed as refused:
            found = SegmentRecord.parse(index, refused.old)
            if not may_take_over(found, now):
                raise ClaimRefused(classify_refusal(record, message_id, found), job, found) from None
            try:
                item = self.table.update(
                    Write(key, update + failures_counted(SEGMENT, True), lease_expired(SEGMENT, now)), returns_new=True
                )
            except ConditionFailed as again:
                found = SegmentRecord.parse(index, again.old)
                raise ClaimRefused(classify_refusal(record, message_id, found), job, found) from None
        claimed_segment = SegmentRecord.parse(index, item)
        return Claim(
            job_id=job_id,
            step=step,
            worker_id=worker_id,
            attempt=claimed_segment.attempts,
            step_names=job.step_names,
            failures=claimed_segment.failures,
            segment=index,
            span=plan.segments[index],
            message_id=message_id,
            retried_at=record.retried_at,
            job=job,
        )

    def claim_merge(
        self, job_id: str, step: str, worker_id: str, message_id: str, now: float, lease_seconds: float, max_attempts: int = 0
    ) -> Claim:
        """Take a split step whose segments are all done, to merge them: a new attempt of the step, with a lease.

        A merge that crashed leaves its lease to expire; the next message of the step's segments claims it again,
        counting a failure against the step's retry budget as ``claim`` does for a takeover. ``max_attempts`` (the
        worker's budget) is recorded, so the dead-letter consumer knows whether a dead-lettered merge has budget left.
        """
        at = StepAt(step)
        base = step_running(at) & every_segment_done(at)
        update = _merge_claimed(at, worker_id, message_id, now, lease_seconds, max_attempts)
        key = job_key(job_id)
        try:
            item = self.table.update(Write(key, update, base & no_live_merge(at)), returns_new=True)
        except ConditionFailed as refused:
            found = parse_job(refused.old)
            if not may_take_over(found.step(step) if found else None, now):
                raise _refused(found, step, message_id, merging=True) from None
            try:
                item = self.table.update(Write(key, update + failures_counted(at, True), base & lease_expired(at, now)), returns_new=True)
            except ConditionFailed as again:
                raise _refused(parse_job(again.old), step, message_id, merging=True) from None
        record = JobRecord.parse(item)
        return Claim(
            job_id=job_id,
            step=step,
            worker_id=worker_id,
            attempt=record.steps[step].attempts,
            step_names=record.step_names,
            failures=record.steps[step].failures,
            merging=True,
            message_id=message_id,
            job=record,
        )

    # --- the holder's writes --------------------------------------------------------------------------------------

    def extend_lease(self, claim: Claim, until: float) -> None:
        self._as_holder(claim, Update().set(claim.at.lease_expires_at, Value("lease", until)))

    def mark_done(self, claim: Claim, now: float, result_file: str, timings: Mapping[str, float]) -> None:
        """running -> done; the job succeeds with its last step, the one whose others are all done. (A segment is done
        with ``Splits.mark_segment_done``.)

        Two ways, each one conditional write: done and the job succeeded while every other step is done; or done
        alone while some other step is not. The claim's view of the job says which to try first; a refusal that
        finds the claim still held means another step finished in between, and the other way is tried. Branches
        finishing together each succeed in one of the two ways, so exactly the last one ends the job.
        """
        if claim.segment is not None:
            raise ValueError("a segment is done with Splits.mark_segment_done")
        others = claim.others
        held = holds_claim(claim.at, claim.worker_id, claim.attempt)
        update = record_done(StepAt(claim.step), now, result_file, timings) + touched(now)
        last = Write(claim.key, update.set(JOB.status, JobStatus.SUCCEEDED), held & others_done(others))
        if not others:
            ways = [last]
        else:
            not_last = Write(claim.key, update, held & other_unfinished(others))
            seen_done = claim.job is not None and set(others) <= set(claim.job.states(StepState.DONE))
            ways = [last, not_last] if seen_done else [not_last, last]
        for attempt in range(2 * len(others) + 2):  # each refusal with the claim held: another step finished meanwhile
            try:
                self.table.update(ways[attempt % len(ways)])
                return
            except ConditionFailed as refused:
                found = parse_job(refused.old)
                step = found.step(claim.step) if found is not None else None
                if step is None or not step.running_under(claim.worker_id, claim.attempt):
                    raise ClaimLost.of(claim) from None
        raise ClaimLost.of(claim)

    def mark_failed(self, claim: Claim, now: float, reason: str) -> None:
        """running -> failed, and the job fails with it. A segment's failure fails its step (and the job) with it,
        in one transaction with the segment's own transition (the holder's condition)."""
        step_failed = step_and_job_failed(StepAt(claim.step), reason, now)
        if claim.segment is None:
            self._as_holder(claim, step_failed)
            return
        try:
            self.table.transact(
                [
                    holder_write(claim, record_failed(SEGMENT, reason, now)),
                    Write(job_key(claim.job_id), step_failed, step_exists(StepAt(claim.step))),
                ]
            )
        except TransactionRefused:
            raise ClaimLost.of(claim) from None

    def release_after_error(self, claim: Claim, now: float, reason: str) -> None:
        """running -> pending after a transient error, counted against the retry budget.

        Pending, not running under a shortened lease: a heartbeat that lands after this write finds the claim gone,
        so it cannot hold back the retry. A merge's step stays running (its segments are done) with no holder, for
        the next merge.
        """
        at = claim.at
        update = let_go(at, _let_go_state(claim)).set_all(
            {at.error: Value("reason", reason), at.failures: Value("failures", claim.failures + 1)}
        )
        self._as_holder(claim, update + touched(now))

    def release(self, claim: Claim, now: float) -> None:
        """running -> pending with no failure counted (the hand-back on shutdown); a merge's step stays running."""
        self._as_holder(claim, let_go(claim.at, _let_go_state(claim)) + touched(now))

    def _as_holder(self, claim: Claim, update: Update) -> None:
        try:
            self.table.update(holder_write(claim, update))
        except ConditionFailed:
            raise ClaimLost.of(claim) from None
