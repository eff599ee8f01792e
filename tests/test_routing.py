"""Routing decisions on job-item changes, and which uploads become jobs."""

from __future__ import annotations

import copy

import pytest

from pipeline_core.graph import Graph
from pipeline_core.jobs import JobStatus, ObjectRef
from pipeline_core.records import new_job_item, parse_job
from stream_router.routing import Action, Enqueue, Finish, Queue, intake_refusal, route

pytestmark = pytest.mark.unit

JOB = new_job_item(ObjectRef("b", "uploads/a.jpg", "v1"), ["people", "faces"], now=1.0)


def routed(event: str, old: dict | None, new: dict | None) -> list[Action]:
    """``route`` on the stream record's images, parsed as the router parses them."""
    return route(event, parse_job(old) if old else None, parse_job(new) if new else None)


def changed(job: dict, step: str, state: str, **fields: str) -> dict:
    new = copy.deepcopy(job)
    new["steps"][step].update(state=state, **fields)
    return new


def test_a_new_job_goes_to_its_first_step() -> None:
    assert routed("INSERT", None, JOB) == [Enqueue("people")]


def test_a_done_step_sends_the_job_to_the_next() -> None:
    running = changed(JOB, "people", "running")
    assert routed("MODIFY", running, changed(JOB, "people", "done")) == [Queue("faces", ("people",))]


def test_the_job_ends_when_the_worker_whose_step_was_the_last_marks_it_succeeded() -> None:
    before = changed(changed(JOB, "people", "done"), "faces", "running")
    after = changed(before, "faces", "done")
    after["status"] = "succeeded"
    assert routed("MODIFY", before, after) == [Finish(JobStatus.SUCCEEDED)]
    assert routed("MODIFY", after, after) == []


DIAMOND = new_job_item(
    ObjectRef("b", "uploads/a.mp4", "v1"),
    Graph.of([("people", ()), ("faces", ()), ("anonymize", ("people", "faces")), ("report", ("anonymize",))]),
    now=1.0,
)


def test_parallel_roots_are_sent_together_and_a_join_waits_for_every_parent() -> None:
    assert routed("INSERT", None, DIAMOND) == [Enqueue("people"), Enqueue("faces")]
    running = changed(changed(DIAMOND, "people", "running"), "faces", "running")
    one_done = changed(running, "people", "done")
    assert routed("MODIFY", running, one_done) == []
    both_done = changed(one_done, "faces", "done")
    assert routed("MODIFY", one_done, both_done) == [Queue("anonymize", ("people", "faces"))]
    queued = changed(both_done, "anonymize", "pending")
    assert routed("MODIFY", both_done, queued) == [], "the router's own queueing sets nothing off"


def test_a_failed_branch_fails_the_job_and_queues_nothing_more() -> None:
    running = changed(changed(DIAMOND, "people", "done"), "faces", "running")
    failed = changed(running, "faces", "failed", error="PermanentError: x")
    assert routed("MODIFY", running, failed) == [Finish(JobStatus.FAILED, "step faces failed: PermanentError: x")]
    # The other branch finishing after the job failed queues nothing.
    failed["status"] = "failed"
    late = changed(changed(DIAMOND, "people", "running"), "faces", "failed", error="x")
    late["status"] = "failed"
    assert routed("MODIFY", late, changed(late, "people", "done")) == []


def test_a_failed_step_fails_the_job_and_stops() -> None:
    before = changed(JOB, "people", "running")
    after = changed(JOB, "people", "failed", error="PermanentError: corrupt video")
    assert routed("MODIFY", before, after) == [Finish(JobStatus.FAILED, "step people failed: PermanentError: corrupt video")]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (changed(JOB, "people", "running"), changed(JOB, "people", "running", worker_id="w2")),  # lease extension
        (JOB, changed(JOB, "people", "running")),  # claimed
        (changed(JOB, "people", "running"), changed(JOB, "people", "pending")),  # released on SIGTERM
        (changed(JOB, "people", "done"), changed(JOB, "people", "done")),  # status rewritten by the router
    ],
)
def test_writes_that_change_no_step_to_done_or_failed_send_nothing(old: dict, new: dict) -> None:
    assert routed("MODIFY", old, new) == []


def test_a_retried_step_is_sent_again_and_does_not_finish_the_job() -> None:
    # gpupipe retry moves failed -> pending; the router, not the CLI, sends the step message.
    failed = changed(JOB, "people", "failed", error="moved to the dead-letter queue after 5 receives")
    failed["status"] = "failed"
    retried = changed(JOB, "people", "pending")
    retried["status"] = "running"
    assert routed("MODIFY", failed, retried) == [Enqueue("people")]
    later_failed = changed(changed(JOB, "people", "done"), "faces", "failed", error="x")
    assert routed("MODIFY", later_failed, changed(changed(JOB, "people", "done"), "faces", "pending")) == [Enqueue("faces")]


def test_removals_and_foreign_items_are_ignored() -> None:
    assert routed("REMOVE", JOB, None) == []
    assert routed("INSERT", None, {"job_id": "not-a-job"}) == []


@pytest.mark.parametrize(
    ("key", "refusal"),
    [
        ("uploads/a b.JPG", None),
        ("uploads/clip.mp4", None),
        ("elsewhere/a.jpg", "outside the input prefix 'uploads/'"),
        ("uploads/notes.txt", "suffix not in"),
        ("uploads/folder/", "a folder marker"),
    ],
)
def test_intake_filters_prefix_and_suffix(key: str, refusal: str | None) -> None:
    result = intake_refusal(key, "uploads/", (".jpg", ".png", ".mp4"))
    if refusal is None:
        assert result is None
    else:
        assert refusal in result


def test_a_reopened_job_sends_its_dropped_steps_again_or_fails_again_while_a_branch_stays_failed() -> None:
    ended = changed(changed(DIAMOND, "people", "failed", error="x"), "faces", "pending")  # faces' message dropped
    ended["status"] = "failed"
    reopened = changed(ended, "people", "pending")
    reopened["status"] = "running"
    assert routed("MODIFY", ended, reopened) == [Enqueue("people"), Enqueue("faces")]
    both_failed = changed(ended, "faces", "failed", error="y")
    one_retried = changed(both_failed, "people", "pending")
    one_retried["status"] = "running"
    assert routed("MODIFY", both_failed, one_retried) == [Finish(JobStatus.FAILED, "step faces failed: y")]
