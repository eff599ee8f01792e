"""The pure decisions the worker, the dead-letter consumer and ``gpupipe`` carry out, from records alone."""

from __future__ import annotations

from enum import StrEnum

from pipeline_core.jobs import StepState
from pipeline_core.protocol.phases import SegmentPhase
from pipeline_core.records import SegmentRecord, StepRecord


class Refusal(StrEnum):
    """Why a claim was refused (``ClaimRefused.reason``), and so what to do with its message."""

    NO_JOB = "no-job"  # the message names a job that does not exist: drop it
    NO_STEP = "no-step"  # the job has no such step (or segment): drop it
    FINISHED = "finished"  # step (or segment) done or failed, or job over: a redelivery, drop it
    HELD_BY_OTHER_MESSAGE = "held-by-other-message"  # a duplicate message: the holder has its own, drop this one
    HELD_BY_THIS_MESSAGE = "held-by-this-message"  # SQS redelivered the message the holder works on: keep it, retry after the lease
    SPLIT = "split"  # the step was split into segments: its own message is settled, the segments' messages do the work
    SEGMENTS_LEFT = "segments-left"  # a merge was asked for while segments are still to finish: the last one merges
    WAITING = "waiting-on-parents"  # a step of a graph not queued yet (a message from before a retry --from): drop it
    NOT_RUNNING = "step-not-running"  # a segment's message while its step waits for `gpupipe retry`'s message to resume it


def classify_refusal(
    step: StepRecord | None, message_id: str, segment: SegmentRecord | None = None, has_job: bool = True, merging: bool = False
) -> Refusal:
    """Why a claim of the step (or its ``segment``; or its merge) by ``message_id`` was refused, from the records as
    the refused write found them (DynamoDB returns the item with the refusal: no read after it)."""
    if not has_job:
        return Refusal.NO_JOB
    if step is None:
        return Refusal.NO_STEP
    if step.finished:
        return Refusal.FINISHED
    if step.state == StepState.WAITING:
        return Refusal.WAITING
    if segment is not None:
        if not 0 <= segment.index < step.segment_count:
            return Refusal.NO_STEP
        if step.state != StepState.RUNNING:
            return Refusal.NOT_RUNNING
        if segment.state in (StepState.DONE, StepState.FAILED):
            return Refusal.FINISHED
        return Refusal.HELD_BY_THIS_MESSAGE if segment.message_id == message_id else Refusal.HELD_BY_OTHER_MESSAGE
    if merging and step.split and not step.every_segment_done:
        return Refusal.SEGMENTS_LEFT
    if step.split and step.worker_id is None:
        return Refusal.SPLIT
    return Refusal.HELD_BY_THIS_MESSAGE if step.message_id == message_id else Refusal.HELD_BY_OTHER_MESSAGE


def may_take_over(record: StepRecord | SegmentRecord | None, now: float) -> bool:
    """Whether a refused claim of ``record`` (as the refusal found it) may yet be a takeover: running under an expired
    lease. The takeover's own condition (``lease_expired``) decides; this only spares a write bound to be refused."""
    return (
        record is not None and record.state == StepState.RUNNING and record.lease_expires_at is not None and record.lease_expires_at < now
    )


class OnRefused(StrEnum):
    """What the worker does with a message whose claim was refused."""

    RESUME = "resume"  # the step is split: send the segments no message carries (resuming it after a retry)
    RESUME_AND_MERGE = "resume-and-merge"  # ... and every segment is done: then merge
    MERGE = "merge"  # every segment is done and this message carries the merge: claim it (an expired one is taken over)
    POSTPONE = "postpone"  # redelivered while its holder's lease runs: come back after it
    REPORT_FAILED = "report-failed"  # a message for a failed step: say how to retry it, then drop it
    DROP = "drop"  # finished, a duplicate, or carried by other messages


def on_refused(reason: Refusal, step: StepRecord | None, segment_message: bool, merging: bool) -> OnRefused:
    if reason == Refusal.SPLIT:
        return OnRefused.RESUME_AND_MERGE if step is not None and step.every_segment_done else OnRefused.RESUME
    if (
        not merging
        and step is not None
        and step.state == StepState.RUNNING
        and step.every_segment_done
        and ((segment_message and reason == Refusal.FINISHED) or (not segment_message and reason == Refusal.HELD_BY_THIS_MESSAGE))
    ):
        # The merge after this segment did not commit, or (the step's own message, after `gpupipe retry` of a failed
        # merge) the merge it ran did not: merge now; claim_merge takes an expired lease over, and one still running
        # is waited out (HELD_BY_THIS_MESSAGE while merging: POSTPONE).
        return OnRefused.MERGE
    if reason == Refusal.HELD_BY_THIS_MESSAGE:
        return OnRefused.POSTPONE
    if reason == Refusal.FINISHED and step is not None and step.state == StepState.FAILED:
        return OnRefused.REPORT_FAILED
    return OnRefused.DROP


def on_segment_done(done: int, planned: int) -> bool:
    """After a segment's count: whether this worker tries the merge (it read the set complete)."""
    return done == planned


def unclaimed(step: StepRecord, segments: list[SegmentRecord]) -> list[int]:
    """The segments of a split step no message is known to carry (``SegmentPhase.UNSENT``): only the step's message
    sends them (``worker.splitter.Splitter.resume``). The splitter records each segment's message id once SQS
    accepts it (a claim records it again); a segment has none when the splitter died before sending or recording it,
    or after ``gpupipe retry`` (which drops it). A segment put back to pending after an error or a hand-back keeps
    its ``message_id``: its message was requeued."""
    return [segment.index for segment in segments if segment.index < step.segment_count and segment.phase == SegmentPhase.UNSENT]


def needs_step_message(step: StepRecord, segments: list[SegmentRecord], message_id: str) -> bool:
    """Whether a split step still needs the step's message ``message_id`` to move on (so that, dead-lettered, it must
    fail the step rather than be dropped).

    Put back to pending by ``gpupipe retry``, only a step message resumes it. With segments left, the step's message
    sends those no message carries (``unclaimed``) and nothing else. With every segment done, the step's
    ``carrier`` names the message that resumed it after a retry or holds its merge (the splitter's message is never
    one): only that one; with none recorded, the segment messages that saw the set complete carry the merge.
    """
    if step.state == StepState.PENDING:
        return True
    if not step.every_segment_done:
        return bool(unclaimed(step, segments))
    return step.carrier == message_id


class OnDeadLetter(StrEnum):
    """What the dead-letter consumer does with a dead-lettered message."""

    FAIL_STEP = "fail-step"  # the step waits on this message (``dead_letters.fail_step``)
    FAIL_SEGMENT = "fail-segment"  # the segment waits on it: it, its step and its job fail (``dead_letters.fail_segment``)
    FAIL_MERGE = "fail-merge"  # it carried the merge of a split whose segments are all done (``dead_letters.fail_merge``)
    REDRIVE_MERGE = "redrive-merge"  # ... with budget left: a fresh step message carries the merge (``redrive_merge``)
    SEND_UNSENT = "send-unsent"  # a running split step's own message: send the segments no message carries, then drop it
    DROP = "drop"  # other messages carry the step, or it is finished


def on_step_dead_letter(step: StepRecord | None, segments: list[SegmentRecord], message_id: str) -> OnDeadLetter:
    """A step's own message (not a segment's) was dead-lettered. Unsplit: fail the step if it waits on the message
    (the store's condition decides). Split: only while it still needs this message (``needs_step_message``): pending
    after a retry, fail; running with unsent segments, send them instead; every segment done, it carries the merge."""
    if step is None or step.finished:
        return OnDeadLetter.DROP
    if step.split and not needs_step_message(step, segments, message_id):
        return OnDeadLetter.DROP
    if step.split and step.state == StepState.RUNNING and not step.every_segment_done:
        # some segments have no message of their own (the splitter was killed between SQS's answer and its records,
        # or before it sent): send theirs, as the step's message would have; each then has its own DLQ path, and a
        # job whose segments would finish is not failed.
        return OnDeadLetter.SEND_UNSENT
    if step.split and step.state == StepState.RUNNING and step.every_segment_done:
        # this message resumed the step or holds its merge
        return OnDeadLetter.REDRIVE_MERGE if step.budget_left else OnDeadLetter.FAIL_MERGE
    return OnDeadLetter.FAIL_STEP


def on_segment_dead_letter(step: StepRecord | None, segment: SegmentRecord, message_id: str) -> OnDeadLetter:
    """A segment's message was dead-lettered. A segment not done fails (if it waits on the message: the store's
    condition); a done one's message fails the step as "merge: ..." only if it carried the merge: every segment done
    and no other message carries it (no ``carrier``, or this one)."""
    if step is None or step.finished or not 0 <= segment.index < step.segment_count:
        return OnDeadLetter.DROP
    if segment.state != StepState.DONE:
        return OnDeadLetter.FAIL_SEGMENT
    if step.state == StepState.RUNNING and step.every_segment_done and step.carrier in (None, message_id):
        # Its receives may have been spent by segment attempts taken over (each counted in the job item's budget),
        # not by the merge: with budget left, a fresh message carries the merge on rather than failing it with its
        # budget unspent.
        return OnDeadLetter.REDRIVE_MERGE if step.budget_left else OnDeadLetter.FAIL_MERGE
    return OnDeadLetter.DROP


class OnRetry(StrEnum):
    NOT_FAILED = "not-failed"
    WHOLE = "whole"  # failed -> pending, fresh budget
    SPLIT = "split"  # segments not done and not held put back (fresh budget, no message), then the step


def on_retry(step: StepRecord | None) -> OnRetry:
    if step is None or step.state != StepState.FAILED:
        return OnRetry.NOT_FAILED
    return OnRetry.SPLIT if step.split else OnRetry.WHOLE


def segment_reset_on_retry(segment: SegmentRecord, now: float) -> bool:
    """Whether `gpupipe retry` puts ``segment`` back to pending: not done, and no live worker holds it (its holder
    commits, or loses its lease and its message takes it over; putting it back would let a second worker run it
    meanwhile). The store's ``not_done_nor_held`` guard is the same rule, atomically."""
    return segment.state != StepState.DONE and not segment.live_lease(now)
