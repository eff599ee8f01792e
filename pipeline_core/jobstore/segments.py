"""Split steps: the plan recorded, segments' messages recorded, each segment done and counted, a retried split resumed.

A split step's job item holds a bounded record of the split (the plan's parameters, ``segment_count``,
``segments_done``, the merge's holder); each segment is an item of its own (``records.segment_key``), so neither the
job item nor a segment's writes grow with the segment count. A segment done and counted is one transaction.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline_core.dynamo.expressions import Update, Value
from pipeline_core.dynamo.table import ConditionFailed, Table, TransactionRefused, Write
from pipeline_core.jobs import StepState
from pipeline_core.jobstore.claims import Claim, ClaimLost, holder_write
from pipeline_core.jobstore.reads import Reads
from pipeline_core.jobstore.updates import record_done, touched
from pipeline_core.protocol.guards import (
    job_open,
    message_unrecorded,
    never_retried,
    no_item,
    not_retried_since,
    split,
    split_pending,
)
from pipeline_core.records import SEGMENT, JobRecord, SegmentRecord, StepAt, job_key, plan_item, segment_identity, segment_key
from pipeline_core.segment_plan import SegmentPlan


class Splits:
    def __init__(self, table: Table, reads: Reads):
        self.table = table
        self.reads = reads

    def record_split(self, claim: Claim, plan: SegmentPlan, now: float, max_attempts: int = 0) -> None:
        """Record the split of the claimed step: the plan's parameters, ``segment_count`` and ``segments_done`` = 0
        (a bounded amount, whatever the count); the step stays running with no holder. ``max_attempts`` (the
        worker's budget) is recorded as ``claim_merge`` records it, so a merge-carrying message dead-lettered before
        any merge was claimed is known to have budget left.

        No segment item is written here: a segment's item is made by the first write that concerns it (its
        message's record, its claim, a dead letter, a retry), and an absent one reads as pending with no message.
        Its lease and worker go, so the step's own message is settled (``Refusal.SPLIT``) and only the segments'
        messages, then the merge, move it on.
        """
        at = StepAt(claim.step)
        update = Update().set_all(
            {
                at.plan: Value("plan", plan_item(plan)),
                at.segment_count: Value("count", plan.count),
                at.segments_done: 0,
                at.segment_seconds: Value("seconds", plan.segment_seconds),
            }
        )
        if max_attempts > 0:
            update = update.set(at.max_attempts, Value("max_attempts", max_attempts))
        update = update.remove(at.lease_expires_at, at.worker_id) + touched(now)
        try:
            self.table.update(holder_write(claim, update))
        except ConditionFailed:
            raise ClaimLost.of(claim) from None

    def resume_split(self, job_id: str, step: str, now: float, message_id: str) -> bool:
        """A split step put back to pending (by ``gpupipe retry``) runs again: pending -> running with no holder,
        so its segments can be claimed; the resuming message is recorded as the step's (it sends the segments'
        messages, and with every segment done it is the one that merges). True when this call moved it."""
        at = StepAt(step)
        message = Value("message", message_id)
        update = Update().set_all({at.state: StepState.RUNNING, at.message_id: message, at.carrier: message}) + touched(now)
        return self.table.update_if(Write(job_key(job_id), update, split_pending(at) & job_open()))

    def record_segment_message(
        self, job_id: str, step: str, segment: int, message_id: str, retried_at: float | None, job: JobRecord | None = None
    ) -> bool:
        """The message just sent for a pending segment carries it: record its id on the segment's item, unless a
        message was recorded or a claim came first (it records the same id). True when this call recorded it.

        So a segment sent but not yet claimed is not taken for one never sent (``unclaimed``): the step's message,
        when it comes back or is dead-lettered, knows the segment has a message of its own. Only while the step was
        not retried since the sender read it (``retried_at`` as it found it; `gpupipe retry` writes it on every
        unfinished segment's item as it drops their messages): a record landing after the retry could name a message
        that is gone. ``job`` is the job as the sender read it (its TTL is the segment's).
        """
        job = job if job is not None else self.reads.job(job_id)
        update = Update().set_all(
            {SEGMENT.message_id: Value("message", message_id), SEGMENT.state: SEGMENT.state.or_default(StepState.PENDING)}
        ) + segment_identity(job, job_id, step, segment)
        condition = (
            no_item() | (never_retried(SEGMENT) & message_unrecorded(SEGMENT))
            if retried_at is None
            else not_retried_since(SEGMENT, retried_at) & message_unrecorded(SEGMENT)
        )
        return self.table.update_if(Write(segment_key(job_id, step, segment), update, condition))

    def mark_segment_done(self, claim: Claim, now: float, result_file: str, timings: Mapping[str, float]) -> tuple[int, int]:
        """A segment running -> done and counted on its step, in one transaction: (done, planned) read after it.

        The segment item's own conditional transition (only its holder moves it from running) and the step's
        ``segments_done`` + 1 commit together or not at all, so each segment is counted exactly once, and no crash
        between two writes can leave one done but uncounted. The increment is one atomic update of the counter
        (no compare-and-set: segments finishing together cost one write each). The SDK's retries of the
        transaction reuse its idempotency token; an answer lost anyway is recognised on the segment's item as the
        refusal returns it (done by this claim: the transaction was applied). Whoever then reads
        ``done == planned`` tries the merge (``claim_merge``: one wins); the last to be counted always reads it.
        """
        if claim.segment is None or claim.span is None:
            raise ValueError("mark_segment_done needs a segment claim")
        at = StepAt(claim.step)
        count = Write(job_key(claim.job_id), Update().set(at.segments_done, at.segments_done.plus(1)) + touched(now), split(at))
        try:
            self.table.transact([holder_write(claim, record_done(SEGMENT, now, result_file, timings)), count])
        except TransactionRefused as refused:
            found = SegmentRecord.parse(claim.segment, refused.old.get(0)) if 0 in refused.failed else None
            if found is None or not (found.held_by(claim.worker_id, claim.attempt) and found.state == StepState.DONE):
                raise ClaimLost.of(claim) from None
            # this very transaction was applied and its answer lost: counted once, by it
        job = self.reads.job(claim.job_id)
        record = job.step(claim.step) if job is not None else None
        return (record.segments_done, record.segment_count or claim.span.count) if record else (0, claim.span.count)
