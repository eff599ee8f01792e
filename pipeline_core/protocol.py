"""The job protocol in one place: the phases a step goes through, the events that move it, the transition table
``(phase, event) -> phase``, the named guards each DynamoDB condition is built from, and the pure decisions the
worker, the dead-letter consumer and ``gpupipe`` carry out.

``jobstore`` does the I/O: every conditional write it makes is built from the guards below (``guard``), and each
row of ``TRANSITIONS`` names the guard and the ``JobStore`` method that makes it. ``docs/job-lifecycle.md``'s
picture and table are generated from ``TRANSITIONS`` (``tools/lifecycle_doc.py``), so they cannot drift.
Records are parsed once from each item (``StepRecord.parse``, ``SegmentRecord.parse``); no caller reads the item's
fields for a decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pipeline_core.jobs import JobStatus, StepState


class Phase(StrEnum):
    """Every state a step of a job can be in."""

    PENDING = "pending"  # waiting for a claim (new, released after an error or a hand-back, or put back by gpupipe retry)
    RUNNING = "running"  # claimed whole: a holder with a lease (a lease run out is taken over by the next claim)
    SPLIT = "split"  # split into segments, some not done; no holder: the segments' messages carry it
    WAITING_TO_MERGE = "waiting-to-merge"  # every segment done, no merge holder: a message that saw the set complete merges
    MERGING = "merging"  # every segment done, a merge holder with a lease
    SPLIT_PENDING = "split-pending"  # split, put back by gpupipe retry: waits for the step's message to resume it
    SUCCEEDED = "succeeded"  # done: result_file is the committed output of the attempt that holds it
    FAILED = "failed"  # with a reason; gpupipe retry puts it back


class SegmentPhase(StrEnum):
    """Every state one segment of a split step can be in."""

    UNSENT = "unsent"  # no item, or pending with no message recorded: only the step's message sends it
    QUEUED = "queued"  # pending, its message recorded (sent, or requeued after an error or a hand-back)
    RUNNING = "running"  # claimed, a holder with a lease
    DONE = "done"  # counted on its step, its result_file committed
    FAILED = "failed"  # failed its step with it


class Event(StrEnum):
    CLAIM = "claim"
    TAKE_OVER = "take over an expired lease"
    SPLIT = "split"
    FINISH = "finish"
    FAIL = "fail"
    RELEASE = "release"
    SEGMENT_DONE = "segment done"
    LAST_SEGMENT_DONE = "last segment done"
    SEGMENT_FAILED = "segment failed"
    CLAIM_MERGE = "claim merge"
    DEAD_LETTER = "dead letter"
    RETRY = "gpupipe retry"
    RESUME = "resume"


# --- records, parsed once from each item ----------------------------------------------------------------------


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class StepRecord:
    """One step of a job item, as every decision reads it."""

    name: str
    state: StepState
    job_status: JobStatus
    attempts: int = 0
    failures: int = 0
    worker_id: str | None = None
    message_id: str | None = None  # the message the step was claimed (or resumed) through
    carrier: str | None = None  # a split step's: the message that resumed it after a retry, or holds its merge
    lease_expires_at: float | None = None
    segment_count: int = 0  # 0: not split
    segments_done: int = 0
    retried_at: float | None = None
    error: str | None = None
    result_file: str | None = None
    max_attempts: int | None = None  # the budget, as the worker that claimed the merge recorded it

    @classmethod
    def parse(cls, job: Mapping[str, Any] | None, step: str) -> StepRecord | None:
        """The record of ``step`` of ``job`` (a job item), or None when there is no such job or step."""
        item = ((job or {}).get("steps") or {}).get(step)
        if job is None or item is None:
            return None
        return cls(
            name=step,
            state=StepState(item.get("state", StepState.PENDING)),
            job_status=JobStatus(job.get("status", JobStatus.PENDING)),
            attempts=int(item.get("attempts") or 0),
            failures=int(item.get("failures") or 0),
            worker_id=item.get("worker_id"),
            message_id=item.get("message_id"),
            carrier=item.get("carrier"),
            lease_expires_at=_float(item.get("lease_expires_at")),
            segment_count=int(item.get("segment_count") or 0),
            segments_done=int(item.get("segments_done") or 0),
            retried_at=_float(item.get("retried_at")),
            error=item.get("error"),
            result_file=item.get("result_file"),
            max_attempts=None if item.get("max_attempts") is None else int(item["max_attempts"]),
        )

    @property
    def split(self) -> bool:
        return self.segment_count > 0

    @property
    def every_segment_done(self) -> bool:
        return self.split and self.segments_done == self.segment_count

    @property
    def finished(self) -> bool:
        """The step done or failed, or its job over: nothing moves it but gpupipe retry."""
        return self.state in (StepState.DONE, StepState.FAILED) or self.job_status in (JobStatus.SUCCEEDED, JobStatus.FAILED)

    @property
    def phase(self) -> Phase:
        if self.state == StepState.DONE:
            return Phase.SUCCEEDED
        if self.state == StepState.FAILED:
            return Phase.FAILED
        if self.state == StepState.PENDING:
            return Phase.SPLIT_PENDING if self.split else Phase.PENDING
        if not self.split:
            return Phase.RUNNING
        if self.worker_id is not None:
            return Phase.MERGING
        return Phase.WAITING_TO_MERGE if self.every_segment_done else Phase.SPLIT

    def live_lease(self, now: float) -> bool:
        return self.worker_id is not None and self.lease_expires_at is not None and self.lease_expires_at >= now

    @property
    def budget_left(self) -> bool:
        """Whether one more failure leaves the step's budget unspent (known once a merge was claimed)."""
        return self.max_attempts is not None and self.failures + 1 < self.max_attempts


@dataclass(frozen=True)
class SegmentRecord:
    """One segment's own item (or the absence of one: pending, no message known), as every decision reads it."""

    index: int
    state: StepState = StepState.PENDING
    attempts: int = 0
    failures: int = 0
    worker_id: str | None = None
    message_id: str | None = None
    lease_expires_at: float | None = None
    retried_at: float | None = None
    result_file: str | None = None

    @classmethod
    def parse(cls, index: int, item: Mapping[str, Any] | None) -> SegmentRecord:
        item = item or {}
        return cls(
            index=index,
            state=StepState(item.get("state", StepState.PENDING)),
            attempts=int(item.get("attempts") or 0),
            failures=int(item.get("failures") or 0),
            worker_id=item.get("worker_id"),
            message_id=item.get("message_id"),
            lease_expires_at=_float(item.get("lease_expires_at")),
            retried_at=_float(item.get("retried_at")),
            result_file=item.get("result_file"),
        )

    @property
    def phase(self) -> SegmentPhase:
        if self.state == StepState.DONE:
            return SegmentPhase.DONE
        if self.state == StepState.FAILED:
            return SegmentPhase.FAILED
        if self.state == StepState.RUNNING:
            return SegmentPhase.RUNNING
        return SegmentPhase.QUEUED if self.message_id else SegmentPhase.UNSENT

    def live_lease(self, now: float) -> bool:
        return self.state == StepState.RUNNING and self.lease_expires_at is not None and self.lease_expires_at >= now


def segment_records(count: int, items: Mapping[int, Mapping[str, Any]]) -> list[SegmentRecord]:
    """Every segment of a split step of ``count`` segments, from the items that exist (``JobStore.get_segments``)."""
    return [SegmentRecord.parse(index, items.get(index)) for index in range(count)]


# --- guards: every DynamoDB condition is built from these, and the table cites them by name ---------------------
# ``p`` is the record's path prefix in an expression: ``steps.#step.`` for a step in its job item, "" for a segment's
# own item. Values: :running :pending :done :failed (states), :now, :message, :claimed_by/:claimed_attempt.

GUARDS: dict[str, str] = {
    "pending": "{p}#state = :pending",
    "lease_expired": "{p}#state = :running AND {p}lease_expires_at < :now",
    "holds_claim": "{p}#state = :claimed_state AND {p}worker_id = :claimed_by AND {p}attempts = :claimed_attempt",
    "whole": "attribute_not_exists({p}segment_count)",
    "job_open": "#status IN (:job_pending, :job_running)",
    "split": "attribute_exists({p}segment_count)",
    "split_pending": "attribute_exists({p}segment_count) AND {p}#state = :pending",
    "step_running": "{p}#state = :running AND #status = :job_running",
    "every_segment_done": "{p}segments_done = {p}segment_count",
    "no_live_merge": "attribute_not_exists({p}lease_expires_at)",
    "failed": "{p}#state = :failed",
    "waits_on_message": (
        "(({p}#state = :running AND ({p}message_id = :message OR {p}lease_expires_at < :now)) OR "
        "({p}#state = :pending AND (attribute_not_exists({p}message_id) OR {p}message_id = :message)))"
    ),
    "merge_carried_by": (
        "(attribute_not_exists({p}carrier) OR {p}carrier = :message) AND "
        "(attribute_not_exists({p}lease_expires_at) OR {p}lease_expires_at < :now OR {p}message_id = :message)"
    ),
    "message_unrecorded": "#state = :pending AND attribute_not_exists(message_id)",
    "failures_unchanged": "{p}failures = :failures",
    "not_retried_since": "retried_at = :retried_at",
    "never_retried": "attribute_not_exists(retried_at)",
    "no_item": "attribute_not_exists(job_id)",
    "step_exists": "attribute_exists({p}#state)",
    "job_unfinished": "attribute_exists(job_id) AND NOT #status IN (:succeeded, :failed)",
    "end_unannounced": "attribute_exists(job_id) AND (attribute_not_exists(announced_at) OR announced_at < :at)",
    "announcement_held": "announced_at = :at",
    "not_done_nor_held": "#state <> :done AND NOT (#state = :running AND lease_expires_at >= :now)",
}


def guard(name: str, p: str = "") -> str:
    """The condition expression of the named guard, on the record at prefix ``p``. Not parenthesised (DynamoDB
    refuses redundant parentheses): a guard joined by OR is parenthesised where it is used."""
    return GUARDS[name].format(p=p)


# --- the transition table ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    source: Phase
    event: Event
    target: Phase
    actor: str
    guards: tuple[str, ...]
    code: str  # the JobStore method that makes it (one conditional write, or one transaction)
    note: str = ""


_W, _DL, _CLI = "worker", "dead-letter consumer", "gpupipe retry"

TRANSITIONS: tuple[Transition, ...] = (
    Transition(Phase.PENDING, Event.CLAIM, Phase.RUNNING, _W, ("step_exists", "job_open", "whole", "pending"), "claim", "attempt n+1"),
    Transition(
        Phase.RUNNING,
        Event.TAKE_OVER,
        Phase.RUNNING,
        _W,
        ("step_exists", "job_open", "whole", "lease_expired"),
        "claim",
        "failures + 1 (no answer)",
    ),
    Transition(Phase.RUNNING, Event.FINISH, Phase.SUCCEEDED, _W, ("holds_claim",), "mark_done", "result_file is the commit"),
    Transition(Phase.RUNNING, Event.FAIL, Phase.FAILED, _W, ("holds_claim",), "mark_failed", "permanent, or max_attempts spent"),
    Transition(
        Phase.RUNNING, Event.RELEASE, Phase.PENDING, _W, ("holds_claim",), "release_after_error", "transient (failures + 1) or hand-back"
    ),
    Transition(Phase.RUNNING, Event.SPLIT, Phase.SPLIT, _W, ("holds_claim",), "record_split", "plan, segment_count; no holder"),
    Transition(Phase.SPLIT, Event.SEGMENT_DONE, Phase.SPLIT, _W, ("holds_claim", "split"), "mark_segment_done", "one transaction"),
    Transition(
        Phase.SPLIT, Event.LAST_SEGMENT_DONE, Phase.WAITING_TO_MERGE, _W, ("holds_claim", "split"), "mark_segment_done", "one transaction"
    ),
    Transition(
        Phase.SPLIT,
        Event.SEGMENT_FAILED,
        Phase.FAILED,
        _W,
        ("holds_claim", "step_exists"),
        "mark_failed",
        "segment and step, one transaction",
    ),
    Transition(
        Phase.SPLIT, Event.DEAD_LETTER, Phase.FAILED, _DL, ("waits_on_message", "step_running"), "fail_dead_lettered_segment", "a segment's"
    ),
    Transition(
        Phase.SPLIT,
        Event.DEAD_LETTER,
        Phase.FAILED,
        _DL,
        ("step_exists", "waits_on_message"),
        "fail_dead_lettered",
        "the step's, a segment unsent",
    ),
    Transition(
        Phase.WAITING_TO_MERGE,
        Event.CLAIM_MERGE,
        Phase.MERGING,
        _W,
        ("step_running", "every_segment_done", "no_live_merge"),
        "claim_merge",
        "attempt n+1, carrier",
    ),
    Transition(
        Phase.MERGING,
        Event.TAKE_OVER,
        Phase.MERGING,
        _W,
        ("step_running", "every_segment_done", "lease_expired"),
        "claim_merge",
        "failures + 1 (no answer)",
    ),
    Transition(Phase.MERGING, Event.FINISH, Phase.SUCCEEDED, _W, ("holds_claim",), "mark_done", "the merged result"),
    Transition(Phase.MERGING, Event.FAIL, Phase.FAILED, _W, ("holds_claim",), "mark_failed", "merge: ..."),
    Transition(Phase.MERGING, Event.RELEASE, Phase.WAITING_TO_MERGE, _W, ("holds_claim",), "release_after_error", "stays running"),
    Transition(
        Phase.WAITING_TO_MERGE,
        Event.DEAD_LETTER,
        Phase.FAILED,
        _DL,
        ("step_running", "every_segment_done", "merge_carried_by"),
        "fail_dead_lettered_merge",
        "merge: ...",
    ),
    Transition(
        Phase.MERGING,
        Event.DEAD_LETTER,
        Phase.FAILED,
        _DL,
        ("step_running", "every_segment_done", "merge_carried_by"),
        "fail_dead_lettered_merge",
        "merge: ...",
    ),
    Transition(
        Phase.WAITING_TO_MERGE,
        Event.DEAD_LETTER,
        Phase.WAITING_TO_MERGE,
        _DL,
        ("step_running", "every_segment_done", "merge_carried_by", "failures_unchanged"),
        "redrive_merge",
        "budget left: a fresh step message carries it, failures + 1",
    ),
    Transition(
        Phase.MERGING,
        Event.DEAD_LETTER,
        Phase.MERGING,
        _DL,
        ("step_running", "every_segment_done", "merge_carried_by", "failures_unchanged"),
        "redrive_merge",
        "budget left: a fresh step message takes the expired merge over",
    ),
    Transition(Phase.PENDING, Event.DEAD_LETTER, Phase.FAILED, _DL, ("step_exists", "waits_on_message"), "fail_dead_lettered"),
    Transition(Phase.RUNNING, Event.DEAD_LETTER, Phase.FAILED, _DL, ("step_exists", "waits_on_message"), "fail_dead_lettered"),
    Transition(Phase.SPLIT_PENDING, Event.DEAD_LETTER, Phase.FAILED, _DL, ("step_exists", "waits_on_message"), "fail_dead_lettered"),
    Transition(Phase.FAILED, Event.RETRY, Phase.PENDING, _CLI, ("step_exists", "failed"), "retry_failed_step", "fresh budget"),
    Transition(
        Phase.FAILED,
        Event.RETRY,
        Phase.SPLIT_PENDING,
        _CLI,
        ("step_exists", "failed", "not_done_nor_held"),
        "retry_failed_step",
        "done segments kept",
    ),
    Transition(Phase.SPLIT_PENDING, Event.RESUME, Phase.SPLIT, _W, ("split_pending", "job_open"), "resume_split", "unsent segments sent"),
    Transition(
        Phase.SPLIT_PENDING, Event.RESUME, Phase.WAITING_TO_MERGE, _W, ("split_pending", "job_open"), "resume_split", "carrier: it merges"
    ),
    Transition(
        Phase.FAILED, Event.SEGMENT_DONE, Phase.FAILED, _W, ("holds_claim", "split"), "mark_segment_done", "counted; kept by a retry"
    ),
    Transition(
        Phase.SPLIT_PENDING, Event.SEGMENT_DONE, Phase.SPLIT_PENDING, _W, ("holds_claim", "split"), "mark_segment_done", "a held segment"
    ),
)


@dataclass(frozen=True)
class JobTransition:
    """A write to the job's own status or announcement (the step table above moves ``status`` with its steps)."""

    source: str  # a JobStatus value, "none" (no item yet) or "ended" (succeeded or failed)
    event: str
    target: str
    actor: str
    guards: tuple[str, ...]
    code: str
    note: str = ""


_INTAKE, _ROUTER = "intake, or the worker of a raw S3 event", "router"

JOB_TRANSITIONS: tuple[JobTransition, ...] = (
    JobTransition("none", "upload", JobStatus.PENDING.value, _INTAKE, ("no_item",), "create_job", "one job per object version"),
    JobTransition(
        "none",
        "upload, its S3 event straight on a step's queue",
        JobStatus.RUNNING.value,
        _W,
        ("no_item",),
        "create_claimed",
        "created with its step claimed (attempt 1): create_job then claim in one write",
    ),
    JobTransition("none", "dead letter", JobStatus.PENDING.value, _DL, ("no_item",), "create_job", "then failed with the reason"),
    JobTransition(
        JobStatus.RUNNING.value, "last step ends", "ended", _ROUTER, ("job_unfinished",), "set_status", "the worker usually has already"
    ),
    JobTransition("ended", "announce", "ended", _ROUTER, ("end_unannounced",), "claim_announcement", "once per end"),
    JobTransition(
        "ended", "announcement not sent", "ended", _ROUTER, ("announcement_held",), "release_announcement", "the record's retry sends it"
    ),
)


def next_phase(phase: Phase, event: Event) -> frozenset[Phase]:
    """The phases ``event`` may move a step in ``phase`` to (empty: the event cannot happen there)."""
    return frozenset(t.target for t in TRANSITIONS if t.source == phase and t.event == event)


def can_move(old: Phase, new: Phase) -> bool:
    """Whether any event moves a step from ``old`` to ``new``."""
    return any(t.source == old and t.target == new for t in TRANSITIONS)


def phase_after_segment_done(step: StepRecord) -> Phase:
    """Where a segment's count leaves its step (the count is already in ``step``)."""
    if step.phase in (Phase.FAILED, Phase.SPLIT_PENDING):
        return step.phase
    return Phase.WAITING_TO_MERGE if step.every_segment_done else Phase.SPLIT


# --- decisions: pure, carried out by the worker, the dead-letter consumer and gpupipe ---------------------------


class Unclaimable(StrEnum):
    """Why a step could not be claimed, and so what to do with its message."""

    NO_JOB = "no-job"  # the message names a job that does not exist: drop it
    NO_STEP = "no-step"  # the job has no such step (or segment): drop it
    FINISHED = "finished"  # step (or segment) done or failed, or job over: a redelivery, drop it
    HELD_BY_OTHER_MESSAGE = "held-by-other-message"  # a duplicate message: the holder has its own, drop this one
    HELD_BY_THIS_MESSAGE = "held-by-this-message"  # SQS redelivered the message the holder works on: keep it, retry after the lease
    SPLIT = "split"  # the step was split into segments: its own message is settled, the segments' messages do the work
    SEGMENTS_LEFT = "segments-left"  # a merge was asked for while segments are still to finish: the last one merges
    NOT_RUNNING = "step-not-running"  # a segment's message while its step waits for `gpupipe retry`'s message to resume it


def classify_unclaimable(
    step: StepRecord | None, message_id: str, segment: SegmentRecord | None = None, has_job: bool = True, merging: bool = False
) -> Unclaimable:
    """Why a claim of the step (or its ``segment``; or its merge) by ``message_id`` was refused."""
    if not has_job:
        return Unclaimable.NO_JOB
    if step is None:
        return Unclaimable.NO_STEP
    if step.finished:
        return Unclaimable.FINISHED
    if segment is not None:
        if not 0 <= segment.index < step.segment_count:
            return Unclaimable.NO_STEP
        if step.state != StepState.RUNNING:
            return Unclaimable.NOT_RUNNING
        if segment.state in (StepState.DONE, StepState.FAILED):
            return Unclaimable.FINISHED
        return Unclaimable.HELD_BY_THIS_MESSAGE if segment.message_id == message_id else Unclaimable.HELD_BY_OTHER_MESSAGE
    if merging and step.split and not step.every_segment_done:
        return Unclaimable.SEGMENTS_LEFT
    if step.split and step.worker_id is None:
        return Unclaimable.SPLIT
    return Unclaimable.HELD_BY_THIS_MESSAGE if step.message_id == message_id else Unclaimable.HELD_BY_OTHER_MESSAGE


class OnRefused(StrEnum):
    """What the worker does with a message whose claim was refused."""

    RESUME = "resume"  # the step is split: send the segments no message carries (resuming it after a retry)
    RESUME_AND_MERGE = "resume-and-merge"  # ... and every segment is done: then merge
    MERGE = "merge"  # every segment is done and this message carries the merge: claim it (an expired one is taken over)
    POSTPONE = "postpone"  # redelivered while its holder's lease runs: come back after it
    REPORT_FAILED = "report-failed"  # a message for a failed step: say how to retry it, then drop it
    DROP = "drop"  # finished, a duplicate, or carried by other messages


def on_refused(reason: Unclaimable, step: StepRecord | None, segment_message: bool, merging: bool) -> OnRefused:
    if reason == Unclaimable.SPLIT:
        return OnRefused.RESUME_AND_MERGE if step is not None and step.every_segment_done else OnRefused.RESUME
    if (
        not merging
        and step is not None
        and step.state == StepState.RUNNING
        and step.every_segment_done
        and ((segment_message and reason == Unclaimable.FINISHED) or (not segment_message and reason == Unclaimable.HELD_BY_THIS_MESSAGE))
    ):
        # The merge after this segment did not commit, or (the step's own message, after `gpupipe retry` of a failed
        # merge) the merge it ran did not: merge now; claim_merge takes an expired lease over, and one still running
        # is waited out (HELD_BY_THIS_MESSAGE while merging: POSTPONE).
        return OnRefused.MERGE
    if reason == Unclaimable.HELD_BY_THIS_MESSAGE:
        return OnRefused.POSTPONE
    if reason == Unclaimable.FINISHED and step is not None and step.state == StepState.FAILED:
        return OnRefused.REPORT_FAILED
    return OnRefused.DROP


def on_segment_done(done: int, planned: int) -> bool:
    """After a segment's count: whether this worker tries the merge (it read the set complete)."""
    return done == planned


def unclaimed(step: StepRecord, segments: list[SegmentRecord]) -> list[int]:
    """The segments of a split step no message is known to carry (``SegmentPhase.UNSENT``): only the step's message
    sends them (``worker.segments.Splitter.resume``). The splitter records each segment's message id once SQS
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

    FAIL_STEP = "fail-step"  # the step waits on this message (``fail_dead_lettered``)
    FAIL_SEGMENT = "fail-segment"  # the segment waits on it: it, its step and its job fail (``fail_dead_lettered_segment``)
    FAIL_MERGE = "fail-merge"  # it carried the merge of a split whose segments are all done (``fail_dead_lettered_merge``)
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
        # or before it sent): send theirs, as the step's message would have; each then has its own DLQ path
        # (issue 21: such a job was failed although its segments had messages).
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
        # not by the merge: with budget left, a fresh message carries the merge on (issue 21: such a merge failed
        # "moved to the dead-letter queue" with 0 of 5 failures spent).
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
    commits, or loses its lease and its message takes it over; found in review: a retry put a live-held segment back,
    so a second worker ran it meanwhile). The store's ``not_done_nor_held`` guard is the same rule, atomically."""
    return segment.state != StepState.DONE and not segment.live_lease(now)
