"""The updates more than one write makes, each written once."""

from __future__ import annotations

from collections.abc import Mapping

from pipeline_core.dynamo.expressions import Update, Value
from pipeline_core.jobs import JobStatus, StepState
from pipeline_core.records import JOB, RecordAt, StepAt

# The error recorded when a claim takes over an expired lease (a failure against the retry budget).
UNANSWERED = "the worker running the attempt before stopped answering (killed, or hung past its lease)"


def touched(now: float) -> Update:
    """The job item's ``updated_at``: every change to a job item records when."""
    return Update().set(JOB.updated_at, Value("now", now))


def record_failed(at: RecordAt, reason: str, now: float) -> Update:
    """A step's record (or a segment's item) failed with ``reason``; its lease goes."""
    return (
        Update()
        .set_all({at.state: StepState.FAILED, at.finished_at: Value("now", now), at.error: Value("reason", reason)})
        .remove(at.lease_expires_at)
    )


def record_done(at: RecordAt, now: float, result_file: str, timings: Mapping[str, float]) -> Update:
    """A step's record (or a segment's item) done: ``result_file`` is the commit."""
    return (
        Update()
        .set_all(
            {
                at.state: StepState.DONE,
                at.finished_at: Value("now", now),
                at.result_file: Value("result", result_file),
                at.timings: Value("timings", dict(timings)),
            }
        )
        .remove(at.lease_expires_at)
    )


def step_and_job_failed(at: StepAt, reason: str, now: float) -> Update:
    """A step failed, and its job with it: every way a step fails (its worker, a dead letter, a segment's failure)."""
    return record_failed(at, reason, now).set(JOB.status, JobStatus.FAILED) + touched(now)


def claimed(at: RecordAt, worker_id: str, message_id: str, now: float, lease_seconds: float) -> Update:
    """A new attempt, held by ``worker_id`` through ``message_id`` until the lease runs out."""
    return Update().set_all(
        {
            at.state: StepState.RUNNING,
            at.attempts: at.attempts.or_default(0).plus(1),
            at.worker_id: Value("worker", worker_id),
            at.message_id: Value("message", message_id),
            at.lease_expires_at: Value("lease", now + lease_seconds),
            at.started_at: Value("now", now),
        }
    )


def failures_counted(at: RecordAt, unanswered: bool) -> Update:
    """A claim's failure count: as it was, or one more when it takes over an attempt that ended with no answer."""
    if not unanswered:
        return Update().set(at.failures, at.failures.or_default(0))
    return Update().set_all({at.failures: at.failures.or_default(0).plus(1), at.error: Value("unanswered", UNANSWERED)})


def let_go(at: RecordAt, state: StepState) -> Update:
    """The holder lets the record go (an error, a hand-back): no lease, no worker."""
    return Update().set(at.state, state).remove(at.lease_expires_at, at.worker_id)
