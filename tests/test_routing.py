"""Routing decisions on job-item changes, and which uploads become jobs."""

from __future__ import annotations

import copy

import pytest

from pipeline_core.jobs import JobStatus, ObjectRef
from pipeline_core.records import new_job_item, parse_job
from stream_router.routing import Action, Enqueue, Finish, intake_refusal, route

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
    assert routed("MODIFY", running, changed(JOB, "people", "done")) == [Enqueue("faces")]


def test_the_last_step_done_finishes_the_job() -> None:
    before = changed(changed(JOB, "people", "done"), "faces", "running")
    after = changed(before, "faces", "done")
    assert routed("MODIFY", before, after) == [Finish(JobStatus.SUCCEEDED)]


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
