"""The transition table: ``(phase, event) -> phase`` for a step, and the job item's own writes.

Each row names the actor that makes the move, the guards (``protocol.guards``) its condition is built from, and the
``JobStore`` method that makes it (one conditional write, or one transaction): ``tests/test_guards_per_row.py``
checks that each method sends exactly the guards its row names. ``docs/job-lifecycle.md``'s picture and table are
generated from these rows (``tools/lifecycle_doc.py``), so they cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline_core.jobs import JobStatus
from pipeline_core.protocol.phases import Event, Phase, SegmentPhase


@dataclass(frozen=True)
class Transition:
    source: Phase
    event: Event
    target: Phase
    actor: str
    guards: tuple[str, ...]
    code: str  # the JobStore method that makes it (one conditional write, or one transaction)
    note: str = ""


_W, _DL, _CLI, _R = "worker", "dead-letter consumer", "gpupipe retry", "router"
_JOIN = ("job_open", "waiting", "parents_succeeded", "pending", "queued_by")
_FROM = ("job_ended", "step_exists", "finished")
_FROM_SPLIT = (*_FROM, "no_item", "not_held")

TRANSITIONS: tuple[Transition, ...] = (
    Transition(Phase.WAITING, Event.QUEUE, Phase.PENDING, _R, _JOIN, "joins.queue", "the first record to find them done; then sent"),
    Transition(Phase.PENDING, Event.QUEUE, Phase.PENDING, _R, _JOIN, "joins.queue", "the same record, retried: sent again"),
    Transition(Phase.SUCCEEDED, Event.RETRY_FROM, Phase.PENDING, _CLI, _FROM, "retries.retry_from", "run again: fresh budget"),
    Transition(Phase.SUCCEEDED, Event.RETRY_FROM, Phase.PENDING, _CLI, _FROM_SPLIT, "retries.retry_from", "split: every segment again"),
    Transition(Phase.FAILED, Event.RETRY_FROM, Phase.PENDING, _CLI, _FROM, "retries.retry_from", "run again: fresh budget"),
    Transition(Phase.SUCCEEDED, Event.RETRY_DOWNSTREAM, Phase.WAITING, _CLI, _FROM, "retries.retry_from", "its result dropped"),
    Transition(Phase.FAILED, Event.RETRY_DOWNSTREAM, Phase.WAITING, _CLI, _FROM, "retries.retry_from", "fresh budget"),
    Transition(Phase.WAITING, Event.RETRY_DOWNSTREAM, Phase.WAITING, _CLI, _FROM, "retries.retry_from", "its parent failed: still waiting"),
    Transition(
        Phase.RUNNING, Event.RETRY_DOWNSTREAM, Phase.WAITING, _CLI, _FROM, "retries.retry_from", "a branch of a failed job: claim lost"
    ),
    Transition(
        Phase.PENDING, Event.CLAIM, Phase.RUNNING, _W, ("step_exists", "job_open", "whole", "pending"), "claims.claim", "attempt n+1"
    ),
    Transition(
        Phase.RUNNING,
        Event.TAKE_OVER,
        Phase.RUNNING,
        _W,
        ("step_exists", "job_open", "whole", "lease_expired"),
        "claims.claim",
        "failures + 1 (no answer)",
    ),
    Transition(
        Phase.RUNNING, Event.FINISH, Phase.SUCCEEDED, _W, ("holds_claim", "others_done"), "claims.mark_done", "the job's last: it succeeds"
    ),
    Transition(
        Phase.RUNNING,
        Event.FINISH,
        Phase.SUCCEEDED,
        _W,
        ("holds_claim", "other_unfinished"),
        "claims.mark_done",
        "another step left: result_file is the commit",
    ),
    Transition(Phase.RUNNING, Event.FAIL, Phase.FAILED, _W, ("holds_claim",), "claims.mark_failed", "permanent, or max_attempts spent"),
    Transition(
        Phase.RUNNING,
        Event.RELEASE,
        Phase.PENDING,
        _W,
        ("holds_claim",),
        "claims.release_after_error",
        "transient (failures + 1) or hand-back",
    ),
    Transition(Phase.RUNNING, Event.SPLIT, Phase.SPLIT, _W, ("holds_claim",), "splits.record_split", "plan, segment_count; no holder"),
    Transition(Phase.SPLIT, Event.SEGMENT_DONE, Phase.SPLIT, _W, ("holds_claim", "split"), "splits.mark_segment_done", "one transaction"),
    Transition(
        Phase.SPLIT,
        Event.LAST_SEGMENT_DONE,
        Phase.WAITING_TO_MERGE,
        _W,
        ("holds_claim", "split"),
        "splits.mark_segment_done",
        "one transaction",
    ),
    Transition(
        Phase.SPLIT,
        Event.SEGMENT_FAILED,
        Phase.FAILED,
        _W,
        ("holds_claim", "step_exists"),
        "claims.mark_failed",
        "segment and step, one transaction",
    ),
    Transition(
        Phase.SPLIT,
        Event.DEAD_LETTER,
        Phase.FAILED,
        _DL,
        ("no_item", "waits_on_message", "step_running"),
        "dead_letters.fail_segment",
        "a segment's",
    ),
    Transition(
        Phase.SPLIT,
        Event.DEAD_LETTER,
        Phase.FAILED,
        _DL,
        ("step_exists", "waits_on_message"),
        "dead_letters.fail_step",
        "the step's, a segment unsent",
    ),
    Transition(
        Phase.WAITING_TO_MERGE,
        Event.CLAIM_MERGE,
        Phase.MERGING,
        _W,
        ("step_running", "every_segment_done", "no_live_merge"),
        "claims.claim_merge",
        "attempt n+1, carrier",
    ),
    Transition(
        Phase.MERGING,
        Event.TAKE_OVER,
        Phase.MERGING,
        _W,
        ("step_running", "every_segment_done", "lease_expired"),
        "claims.claim_merge",
        "failures + 1 (no answer)",
    ),
    Transition(
        Phase.MERGING, Event.FINISH, Phase.SUCCEEDED, _W, ("holds_claim", "others_done"), "claims.mark_done", "the job's last: it succeeds"
    ),
    Transition(
        Phase.MERGING, Event.FINISH, Phase.SUCCEEDED, _W, ("holds_claim", "other_unfinished"), "claims.mark_done", "another step left"
    ),
    Transition(Phase.MERGING, Event.FAIL, Phase.FAILED, _W, ("holds_claim",), "claims.mark_failed", "merge: ..."),
    Transition(Phase.MERGING, Event.RELEASE, Phase.WAITING_TO_MERGE, _W, ("holds_claim",), "claims.release_after_error", "stays running"),
    Transition(
        Phase.WAITING_TO_MERGE,
        Event.DEAD_LETTER,
        Phase.FAILED,
        _DL,
        ("step_running", "every_segment_done", "merge_carried_by"),
        "dead_letters.fail_merge",
        "merge: ...",
    ),
    Transition(
        Phase.MERGING,
        Event.DEAD_LETTER,
        Phase.FAILED,
        _DL,
        ("step_running", "every_segment_done", "merge_carried_by"),
        "dead_letters.fail_merge",
        "merge: ...",
    ),
    Transition(
        Phase.WAITING_TO_MERGE,
        Event.DEAD_LETTER,
        Phase.WAITING_TO_MERGE,
        _DL,
        ("step_running", "every_segment_done", "merge_carried_by", "failures_unchanged"),
        "dead_letters.redrive_merge",
        "budget left: a fresh step message carries it, failures + 1",
    ),
    Transition(
        Phase.MERGING,
        Event.DEAD_LETTER,
        Phase.MERGING,
        _DL,
        ("step_running", "every_segment_done", "merge_carried_by", "failures_unchanged"),
        "dead_letters.redrive_merge",
        "budget left: a fresh step message takes the expired merge over",
    ),
    Transition(Phase.PENDING, Event.DEAD_LETTER, Phase.FAILED, _DL, ("step_exists", "waits_on_message"), "dead_letters.fail_step"),
    Transition(Phase.RUNNING, Event.DEAD_LETTER, Phase.FAILED, _DL, ("step_exists", "waits_on_message"), "dead_letters.fail_step"),
    Transition(Phase.SPLIT_PENDING, Event.DEAD_LETTER, Phase.FAILED, _DL, ("step_exists", "waits_on_message"), "dead_letters.fail_step"),
    Transition(Phase.FAILED, Event.RETRY, Phase.PENDING, _CLI, ("step_exists", "failed"), "retries.retry_step", "fresh budget"),
    Transition(
        Phase.FAILED,
        Event.RETRY,
        Phase.SPLIT_PENDING,
        _CLI,
        ("step_exists", "failed", "no_item", "not_done_nor_held"),
        "retries.retry_step",
        "done segments kept",
    ),
    Transition(
        Phase.SPLIT_PENDING, Event.RESUME, Phase.SPLIT, _W, ("split_pending", "job_open"), "splits.resume_split", "unsent segments sent"
    ),
    Transition(
        Phase.SPLIT_PENDING,
        Event.RESUME,
        Phase.WAITING_TO_MERGE,
        _W,
        ("split_pending", "job_open"),
        "splits.resume_split",
        "carrier: it merges",
    ),
    Transition(
        Phase.FAILED, Event.SEGMENT_DONE, Phase.FAILED, _W, ("holds_claim", "split"), "splits.mark_segment_done", "counted; kept by a retry"
    ),
    Transition(
        Phase.SPLIT_PENDING,
        Event.SEGMENT_DONE,
        Phase.SPLIT_PENDING,
        _W,
        ("holds_claim", "split"),
        "splits.mark_segment_done",
        "a held segment",
    ),
)


@dataclass(frozen=True)
class SegmentTransition:
    """One segment's own item (its step moves with it where the step table above says so)."""

    source: SegmentPhase
    event: Event
    target: SegmentPhase
    actor: str
    guards: tuple[str, ...]
    code: str
    note: str = ""


_SENT = ("no_item", "never_retried", "message_unrecorded")
_DEAD = ("no_item", "waits_on_message", "step_running")
_RESET = ("no_item", "not_done_nor_held", "step_exists", "failed")

_RESET_ALL = ("no_item", "not_held", *_FROM)

SEGMENT_TRANSITIONS: tuple[SegmentTransition, ...] = (
    SegmentTransition(SegmentPhase.DONE, Event.RETRY_FROM, SegmentPhase.UNSENT, _CLI, _RESET_ALL, "retries.retry_from", "done: again"),
    SegmentTransition(SegmentPhase.FAILED, Event.RETRY_FROM, SegmentPhase.UNSENT, _CLI, _RESET_ALL, "retries.retry_from", "failed: again"),
    SegmentTransition(SegmentPhase.UNSENT, Event.SEND, SegmentPhase.QUEUED, _W, _SENT, "splits.record_segment_message", "its message's id"),
    SegmentTransition(
        SegmentPhase.UNSENT,
        Event.SEND,
        SegmentPhase.QUEUED,
        _W,
        ("not_retried_since", "message_unrecorded"),
        "splits.record_segment_message",
        "after a retry: none since the sender read the step",
    ),
    SegmentTransition(
        SegmentPhase.UNSENT, Event.CLAIM, SegmentPhase.RUNNING, _W, ("no_item", "pending"), "claims.claim", "its step read running first"
    ),
    SegmentTransition(SegmentPhase.QUEUED, Event.CLAIM, SegmentPhase.RUNNING, _W, ("no_item", "pending"), "claims.claim", "attempt n+1"),
    SegmentTransition(
        SegmentPhase.RUNNING, Event.TAKE_OVER, SegmentPhase.RUNNING, _W, ("lease_expired",), "claims.claim", "failures + 1 (no answer)"
    ),
    SegmentTransition(
        SegmentPhase.RUNNING,
        Event.FINISH,
        SegmentPhase.DONE,
        _W,
        ("holds_claim", "split"),
        "splits.mark_segment_done",
        "counted on its step",
    ),
    SegmentTransition(
        SegmentPhase.RUNNING,
        Event.FAIL,
        SegmentPhase.FAILED,
        _W,
        ("holds_claim", "step_exists"),
        "claims.mark_failed",
        "its step fails too",
    ),
    SegmentTransition(
        SegmentPhase.RUNNING, Event.RELEASE, SegmentPhase.QUEUED, _W, ("holds_claim",), "claims.release_after_error", "message requeued"
    ),
    SegmentTransition(SegmentPhase.UNSENT, Event.DEAD_LETTER, SegmentPhase.FAILED, _DL, _DEAD, "dead_letters.fail_segment"),
    SegmentTransition(SegmentPhase.QUEUED, Event.DEAD_LETTER, SegmentPhase.FAILED, _DL, _DEAD, "dead_letters.fail_segment"),
    SegmentTransition(
        SegmentPhase.RUNNING, Event.DEAD_LETTER, SegmentPhase.FAILED, _DL, _DEAD, "dead_letters.fail_segment", "lease run out"
    ),
    SegmentTransition(
        SegmentPhase.FAILED, Event.RETRY, SegmentPhase.UNSENT, _CLI, _RESET, "retries.retry_step", "fresh budget, no message"
    ),
    SegmentTransition(SegmentPhase.QUEUED, Event.RETRY, SegmentPhase.UNSENT, _CLI, _RESET, "retries.retry_step", "its message dropped"),
    SegmentTransition(SegmentPhase.RUNNING, Event.RETRY, SegmentPhase.UNSENT, _CLI, _RESET, "retries.retry_step", "lease run out"),
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
        "claims.create_claimed",
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
