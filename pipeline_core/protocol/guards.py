"""The named guards: every DynamoDB condition the job store sends is built from these, and the transition table
(``protocol.table``) cites them by name.

Each guard is a function of where the record lives (``StepAt``: a step in its job item; ``SegmentAt``: a segment's
own item; ``RecordAt``: either) and of the values it compares against; it returns a ``Guard`` (a named ``Cond``),
which composes with ``&`` and ``|`` and renders its own placeholders. ``GUARDS`` lists them by name.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import ParamSpec

from pipeline_core.dynamo.expressions import Cond, Guard, Value
from pipeline_core.jobs import JobStatus, StepState
from pipeline_core.records import JOB, RecordAt, SegmentAt, StepAt

P = ParamSpec("P")

GUARDS: dict[str, Callable[..., Guard]] = {}


def guard(build: Callable[P, Cond]) -> Callable[P, Guard]:
    """Register ``build`` as the guard named after it; what it builds carries that name."""

    @functools.wraps(build)
    def named(*args: P.args, **kwargs: P.kwargs) -> Guard:
        return Guard(build.__name__, build(*args, **kwargs))

    GUARDS[build.__name__] = named
    return named


# --- claims ---------------------------------------------------------------------------------------------------


@guard
def pending(at: RecordAt) -> Cond:
    return at.state.eq(StepState.PENDING)


@guard
def lease_expired(at: RecordAt, now: float) -> Cond:
    return at.state.eq(StepState.RUNNING) & at.lease_expires_at.lt(Value("now", now))


@guard
def holds_claim(at: RecordAt, worker_id: str, attempt: int) -> Cond:
    """The record is running under this worker's claim of this attempt: only its holder moves it."""
    return (
        at.state.eq(StepState.RUNNING) & at.worker_id.eq(Value("claimed_by", worker_id)) & at.attempts.eq(Value("claimed_attempt", attempt))
    )


@guard
def step_exists(at: StepAt) -> Cond:
    return at.state.exists()


@guard
def whole(at: StepAt) -> Cond:
    return at.segment_count.missing()


@guard
def split(at: StepAt) -> Cond:
    return at.segment_count.exists()


@guard
def split_pending(at: StepAt) -> Cond:
    return at.segment_count.exists() & at.state.eq(StepState.PENDING)


@guard
def failed(at: RecordAt) -> Cond:
    return at.state.eq(StepState.FAILED)


@guard
def finished(at: StepAt) -> Cond:
    return at.state.is_in(StepState.DONE, StepState.FAILED)


# --- the job ----------------------------------------------------------------------------------------------------


@guard
def no_item() -> Cond:
    """No item under the key yet (a job's, or a segment's: both keep their key in ``job_id``)."""
    return JOB.job_id.missing()


@guard
def job_open() -> Cond:
    return JOB.status.is_in(JobStatus.PENDING, JobStatus.RUNNING)


@guard
def step_running(at: StepAt) -> Cond:
    return at.state.eq(StepState.RUNNING) & JOB.status.eq(JobStatus.RUNNING)


@guard
def job_unfinished() -> Cond:
    return JOB.job_id.exists() & ~JOB.status.is_in(JobStatus.SUCCEEDED, JobStatus.FAILED)


@guard
def end_unannounced(ended_at: float) -> Cond:
    return JOB.job_id.exists() & (JOB.announced_at.missing() | JOB.announced_at.lt(Value("at", ended_at)))


@guard
def announcement_held(ended_at: float) -> Cond:
    return JOB.announced_at.eq(Value("at", ended_at))


@guard
def job_ended() -> Cond:
    return JOB.status.is_in(JobStatus.SUCCEEDED, JobStatus.FAILED)


# --- graphs -----------------------------------------------------------------------------------------------------


def _each(steps: Sequence[str], label: str, test: Callable[[StepAt], Cond], join: Callable[[Cond, Cond], Cond]) -> Cond:
    """``test`` of every step of ``steps`` joined by ``join`` (each step's name under its own placeholder)."""
    conds = [test(StepAt(name, f"{label}{index}")) for index, name in enumerate(steps)]
    return functools.reduce(join, conds)


@guard
def waiting(at: StepAt) -> Cond:
    return at.state.eq(StepState.WAITING)


@guard
def parents_succeeded(parents: Sequence[str]) -> Cond:
    """Every step in ``parents`` done (a root has none: the job's item exists)."""
    if not parents:
        return JOB.job_id.exists()
    return _each(parents, "parent", lambda at: at.state.eq(StepState.DONE), lambda a, b: a & b)


@guard
def queued_by(at: StepAt, token: str) -> Cond:
    """Queued by this stream record already (its retry sends the message its first try may not have)."""
    return at.queued_by.eq(Value("token", token))


@guard
def others_done(others: Sequence[str]) -> Cond:
    """Every other step of the job done: this one is its last (a one-step job has no others: its item exists)."""
    if not others:
        return JOB.job_id.exists()
    return _each(others, "other", lambda at: at.state.eq(StepState.DONE), lambda a, b: a & b)


@guard
def other_unfinished(others: Sequence[str]) -> Cond:
    """Some other step of the job not done: this one is not its last."""
    if not others:
        raise ValueError("a one-step job has no other step")
    return _each(others, "other", lambda at: at.state.ne(StepState.DONE), lambda a, b: a | b)


# --- split steps ------------------------------------------------------------------------------------------------


@guard
def every_segment_done(at: StepAt) -> Cond:
    return at.segments_done.eq(at.segment_count)


@guard
def no_live_merge(at: StepAt) -> Cond:
    return at.lease_expires_at.missing()


@guard
def merge_carried_by(at: StepAt, message_id: str, now: float) -> Cond:
    """No other message carries the merge, and no live merge runs through another message."""
    message = Value("message", message_id)
    return (at.carrier.missing() | at.carrier.eq(message)) & (
        at.lease_expires_at.missing() | at.lease_expires_at.lt(Value("now", now)) | at.message_id.eq(message)
    )


@guard
def message_unrecorded(at: SegmentAt) -> Cond:
    return at.state.eq(StepState.PENDING) & at.message_id.missing()


@guard
def not_retried_since(at: SegmentAt, retried_at: float) -> Cond:
    return at.retried_at.eq(Value("retried_at", retried_at))


@guard
def never_retried(at: SegmentAt) -> Cond:
    return at.retried_at.missing()


@guard
def not_held(at: SegmentAt, now: float) -> Cond:
    """No live holder: what ``gpupipe retry --from`` resets, done or not."""
    return ~(at.state.eq(StepState.RUNNING) & at.lease_expires_at.ge(Value("now", now)))


@guard
def not_done_nor_held(at: SegmentAt, now: float) -> Cond:
    """``decisions.segment_reset_on_retry``, atomically: not done, and no live holder."""
    return at.state.ne(StepState.DONE) & ~(at.state.eq(StepState.RUNNING) & at.lease_expires_at.ge(Value("now", now)))


# --- dead letters -----------------------------------------------------------------------------------------------


@guard
def waits_on_message(at: RecordAt, message_id: str, now: float) -> Cond:
    """The record waits on this message: running, held through it or under an expired lease; or pending, held by no
    message or handed back by it."""
    message = Value("message", message_id)
    running = at.state.eq(StepState.RUNNING) & (at.message_id.eq(message) | at.lease_expires_at.lt(Value("now", now)))
    waiting = at.state.eq(StepState.PENDING) & (at.message_id.missing() | at.message_id.eq(message))
    return running | waiting


@guard
def failures_unchanged(at: RecordAt, failures: int) -> Cond:
    return at.failures.eq(Value("failures", failures))
