"""The dead-letter consumer's writes: a message SQS moved to a step's dead-letter queue fails what waits on it.

Only the message a step (or segment) waits on can fail it (``waits_on_message``): a running record held through
this message (SQS keeps a message's id when it dead-letters it) or whose holder's lease has run out, or a pending
record that no message holds (never claimed, or put back by a retry) or that was handed back by this message. A done
or failed record, or one a live holder with another message works on, is left alone (the write returns False).
"""

from __future__ import annotations

from pipeline_core.dynamo.expressions import Update, Value
from pipeline_core.dynamo.table import Table, TransactionRefused, Write
from pipeline_core.jobstore.updates import record_failed, step_and_job_failed, touched
from pipeline_core.protocol.guards import (
    every_segment_done,
    failures_unchanged,
    merge_carried_by,
    no_item,
    step_exists,
    step_running,
    waits_on_message,
)
from pipeline_core.records import SEGMENT, JobRecord, StepAt, job_key, segment_identity, segment_key
from pipeline_core.segment_plan import Segment


class DeadLetters:
    def __init__(self, table: Table):
        self.table = table

    def fail_step(self, job_id: str, step: str, reason: str, now: float, message_id: str) -> bool:
        """Fail a step whose message was dead-lettered, and its job with it. True when this call failed it."""
        at = StepAt(step)
        condition = step_exists(at) & waits_on_message(at, message_id, now)
        return self.table.update_if(Write(job_key(job_id), step_and_job_failed(at, reason, now), condition))

    def fail_merge(self, job_id: str, step: str, reason: str, now: float, message_id: str) -> bool:
        """Fail a split step whose merge the dead-lettered message ``message_id`` carried, and its job. True when
        this call failed it.

        Only while every segment is done and the step runs, no other message carries the merge (``carrier`` absent
        or this message) and no live merge lease runs through another message.
        """
        at = StepAt(step)
        condition = step_running(at) & every_segment_done(at) & merge_carried_by(at, message_id, now)
        return self.table.update_if(Write(job_key(job_id), step_and_job_failed(at, reason, now), condition))

    def redrive_merge(self, job_id: str, step: str, reason: str, now: float, message_id: str, new_message_id: str, failures: int) -> bool:
        """A dead-lettered message carried the merge of a split whose budget is not spent: the fresh message
        ``new_message_id`` (already sent) carries it from now on, and the dead letter counts one failure. Only while
        the message carried it (``merge_carried_by``) and ``failures`` is still what the consumer read. True when
        this call moved it (else the fresh message is a duplicate its claim refuses)."""
        at = StepAt(step)
        fresh = Value("new", new_message_id)
        update = Update().set_all(
            {at.failures: at.failures.plus(1), at.carrier: fresh, at.message_id: fresh, at.error: Value("reason", reason)}
        ) + touched(now)
        condition = step_running(at) & every_segment_done(at) & merge_carried_by(at, message_id, now) & failures_unchanged(at, failures)
        return self.table.update_if(Write(job_key(job_id), update, condition))

    def fail_segment(self, job: JobRecord, step: str, segment: Segment, reason: str, now: float, message_id: str) -> bool:
        """Fail a segment whose message was dead-lettered, its step and its job, the step's error naming the segment.

        The rule of ``fail_step`` on the segment's own item (an absent one is pending with no message), and only
        while its step runs: one transaction, so either both fail or neither. A done segment, a finished step, or a
        segment a live holder with another message works on is left alone (False). The step is never marked done.
        """
        at = StepAt(step)
        failed_segment = Write(
            segment_key(job.job_id, step, segment.index),
            record_failed(SEGMENT, reason, now) + segment_identity(job, job.job_id, step, segment.index),
            no_item() | waits_on_message(SEGMENT, message_id, now),
        )
        failed_step = Write(job_key(job.job_id), step_and_job_failed(at, f"{segment.label}: {reason}", now), step_running(at))
        try:
            self.table.transact([failed_segment, failed_step])
        except TransactionRefused:
            return False
        return True
