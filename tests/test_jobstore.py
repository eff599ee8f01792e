"""Every step transition is a conditional DynamoDB update: checked against moto."""

from __future__ import annotations

import pytest

from pipeline_core.jobs import ObjectRef
from pipeline_core.jobstore import ClaimLost, ClaimRefused, JobStore
from pipeline_core.protocol.decisions import Refusal, needs_step_message, unclaimed
from pipeline_core.records import SegmentRecord, StepRecord, segment_records
from pipeline_core.segment_plan import SegmentPlan, VideoTimeline
from tests.support.aws import StepStack
from tests.support.items import raw_job, raw_segment, raw_segments

pytestmark = pytest.mark.integration

OBJ = ObjectRef("bucket", "uploads/a b.jpg", "v1", 10)


@pytest.fixture
def store(stack: StepStack) -> JobStore:
    store = JobStore(stack.table)
    assert store.create_job(OBJ, ["people", "faces"], now=1000.0)
    return store


def test_duplicate_create_makes_no_second_job(store: JobStore) -> None:
    assert not store.create_job(OBJ, ["people", "faces"], now=2000.0)
    assert raw_job(store, OBJ.job_id)["created_at"] == 1000.0


def test_claim_marks_step_and_job_running(store: JobStore) -> None:
    claim = store.claims.claim(OBJ.job_id, "people", "w1", "m1", now=1000.0, lease_seconds=30)
    assert (claim.attempt, claim.step_names, claim.others) == (1, ("people", "faces"), ("faces",))
    job = raw_job(store, OBJ.job_id)
    assert job["status"] == "running"
    assert job["steps"]["people"] == {
        "state": "running",
        "attempts": 1,
        "failures": 0,
        "worker_id": "w1",
        "message_id": "m1",
        "lease_expires_at": 1030.0,
        "started_at": 1000.0,
        "after": [],
    }


def test_a_held_step_cannot_be_claimed_until_its_lease_expires(store: JobStore) -> None:
    store.claims.claim(OBJ.job_id, "people", "w1", "m1", now=1000.0, lease_seconds=30)
    with pytest.raises(ClaimRefused) as refused:
        store.claims.claim(OBJ.job_id, "people", "w2", "m2", now=1010.0, lease_seconds=30)
    assert refused.value.reason == Refusal.HELD_BY_OTHER_MESSAGE
    with pytest.raises(ClaimRefused) as refused:
        store.claims.claim(OBJ.job_id, "people", "w2", "m1", now=1010.0, lease_seconds=30)
    assert refused.value.reason == Refusal.HELD_BY_THIS_MESSAGE
    reclaimed = store.claims.claim(OBJ.job_id, "people", "w2", "m1", now=1031.0, lease_seconds=30)
    assert reclaimed.attempt == 2


def test_only_the_current_holder_can_finish(store: JobStore) -> None:
    stale = store.claims.claim(OBJ.job_id, "people", "w1", "m1", now=1000.0, lease_seconds=30)
    current = store.claims.claim(OBJ.job_id, "people", "w2", "m1", now=1031.0, lease_seconds=30)
    with pytest.raises(ClaimLost):
        store.claims.mark_done(stale, now=1040.0, result_file="s3://x", timings={})
    with pytest.raises(ClaimLost):
        store.claims.extend_lease(stale, until=2000.0)
    store.claims.mark_done(current, now=1040.0, result_file="s3://x", timings={"process": 1.5})
    job = raw_job(store, OBJ.job_id)
    assert job["steps"]["people"]["state"] == "done"
    assert job["steps"]["people"]["timings"] == {"process": 1.5}
    assert "lease_expires_at" not in job["steps"]["people"]
    assert job["status"] == "running"  # the next step is still to come
    with pytest.raises(ClaimRefused) as refused:
        store.claims.claim(OBJ.job_id, "people", "w3", "m9", now=1050.0, lease_seconds=30)
    assert refused.value.reason == Refusal.FINISHED


def test_last_step_done_succeeds_the_job(store: JobStore) -> None:
    store.claims.mark_done(store.claims.claim(OBJ.job_id, "people", "w1", "m1", 1000.0, 30), 1001.0, "s3://a", {})
    assert raw_job(store, OBJ.job_id)["status"] == "running"
    assert store.joins.queue(OBJ.job_id, "faces", ("people",), "record-1", 1001.5)  # the router, seeing people done
    store.claims.mark_done(store.claims.claim(OBJ.job_id, "faces", "w1", "m2", 1002.0, 30), 1003.0, "s3://b", {})
    assert raw_job(store, OBJ.job_id)["status"] == "succeeded"


def test_failed_step_fails_the_job_and_blocks_later_steps(store: JobStore) -> None:
    store.claims.mark_failed(store.claims.claim(OBJ.job_id, "people", "w1", "m1", 1000.0, 30), 1001.0, "PermanentError: corrupt")
    job = raw_job(store, OBJ.job_id)
    assert (job["status"], job["steps"]["people"]["state"], job["steps"]["people"]["error"]) == (
        "failed",
        "failed",
        "PermanentError: corrupt",
    )
    with pytest.raises(ClaimRefused) as refused:
        store.claims.claim(OBJ.job_id, "faces", "w1", "m2", 1002.0, 30)
    assert refused.value.reason == Refusal.FINISHED


def test_release_puts_the_step_back_to_pending_for_anyone(store: JobStore) -> None:
    claim = store.claims.claim(OBJ.job_id, "people", "w1", "m1", 1000.0, 300)
    store.claims.release(claim, 1001.0)
    step = raw_job(store, OBJ.job_id)["steps"]["people"]
    assert step["state"] == "pending" and "worker_id" not in step
    assert store.claims.claim(OBJ.job_id, "people", "w2", "m1", 1002.0, 300).attempt == 2


def test_a_transient_error_frees_the_step_and_counts_a_failure_that_a_late_heartbeat_cannot_undo(store: JobStore) -> None:
    claim = store.claims.claim(OBJ.job_id, "people", "w1", "m1", 1000.0, 300)
    store.claims.release_after_error(claim, 1001.0, "TransientError: throttled")
    step = raw_job(store, OBJ.job_id)["steps"]["people"]
    assert (step["state"], step["failures"], step["error"]) == ("pending", 1, "TransientError: throttled")
    with pytest.raises(ClaimLost):  # a heartbeat beat that lands after the error
        store.claims.extend_lease(claim, until=1300.0)
    retry = store.claims.claim(OBJ.job_id, "people", "w2", "m1", 1002.0, 300)  # the redelivery claims at once
    assert (retry.attempt, retry.failures) == (2, 1)


def test_unknown_job_or_step_is_refused(store: JobStore) -> None:
    with pytest.raises(ClaimRefused) as refused:
        store.claims.claim("no-such-job", "people", "w1", "m1", 1000.0, 30)
    assert refused.value.reason == Refusal.NO_JOB
    with pytest.raises(ClaimRefused) as refused:
        store.claims.claim(OBJ.job_id, "nope", "w1", "m1", 1000.0, 30)
    assert refused.value.reason == Refusal.NO_STEP


# --- dead letters, retries and announcements --------------------------------------------------

DLQ_REASON = "moved to the dead-letter queue after 5 receives"


def test_a_dead_lettered_message_fails_the_step_it_holds_or_a_pending_one(store: JobStore) -> None:
    store.claims.claim(OBJ.job_id, "people", "w1", "m1", now=1000.0, lease_seconds=30)
    assert not store.dead_letters.fail_step(OBJ.job_id, "people", DLQ_REASON, 1010.0, message_id="m-duplicate")  # a live holder
    assert raw_job(store, OBJ.job_id)["steps"]["people"]["state"] == "running"
    assert store.dead_letters.fail_step(OBJ.job_id, "people", DLQ_REASON, 1010.0, message_id="m1")
    job = raw_job(store, OBJ.job_id)
    assert (job["status"], job["steps"]["people"]["state"], job["steps"]["people"]["error"]) == ("failed", "failed", DLQ_REASON)
    assert "lease_expires_at" not in job["steps"]["people"]
    assert not store.dead_letters.fail_step(OBJ.job_id, "people", "again", 1200.0, message_id="m1")
    assert raw_job(store, OBJ.job_id)["steps"]["people"]["error"] == DLQ_REASON


def test_a_dead_lettered_message_fails_a_step_whose_holder_is_gone(store: JobStore) -> None:
    store.claims.claim(OBJ.job_id, "people", "w1", "m1", now=1000.0, lease_seconds=30)
    assert store.dead_letters.fail_step(OBJ.job_id, "people", DLQ_REASON, 1031.0, message_id="m-other")
    assert raw_job(store, OBJ.job_id)["status"] == "failed"


def test_a_dead_lettered_message_fails_a_pending_step_unless_another_message_handed_it_back(store: JobStore) -> None:
    assert store.dead_letters.fail_step(OBJ.job_id, "people", DLQ_REASON, 1100.0, message_id="m1")  # never claimed
    other = ObjectRef("bucket", "uploads/other.jpg", "v1")
    store.create_job(other, ["people"], now=1000.0)
    store.claims.release(store.claims.claim(other.job_id, "people", "w1", "m1", 1000.0, 30), 1001.0)
    assert not store.dead_letters.fail_step(other.job_id, "people", DLQ_REASON, 1100.0, message_id="m2")
    assert store.dead_letters.fail_step(other.job_id, "people", DLQ_REASON, 1100.0, message_id="m1")


def test_a_done_step_or_a_missing_job_is_not_failed_by_a_dead_letter(store: JobStore) -> None:
    store.claims.mark_done(store.claims.claim(OBJ.job_id, "people", "w1", "m1", 1000.0, 30), 1001.0, "s3://a", {})
    assert not store.dead_letters.fail_step(OBJ.job_id, "people", DLQ_REASON, 1100.0, message_id="m1")
    assert not store.dead_letters.fail_step("no-such-job", "people", DLQ_REASON, 1100.0, message_id="m1")
    assert not store.dead_letters.fail_step(OBJ.job_id, "nope", DLQ_REASON, 1100.0, message_id="m1")
    assert raw_job(store, "no-such-job") is None


def test_retry_puts_a_failed_step_back_with_a_fresh_budget_and_keeps_its_attempts(store: JobStore) -> None:
    assert not store.retries.retry_step(OBJ.job_id, "people", 1001.0)  # pending: nothing to retry
    store.claims.mark_failed(store.claims.claim(OBJ.job_id, "people", "w1", "m1", 1000.0, 30), 1001.0, "PermanentError: corrupt")
    failures = {"UpdateExpression": "SET steps.people.failures = :n", "ExpressionAttributeValues": {":n": 4}}
    store.table.resource.update_item(Key={"job_id": OBJ.job_id}, **failures)  # transient failures the worker counted
    assert store.retries.retry_step(OBJ.job_id, "people", 2000.0)
    job = raw_job(store, OBJ.job_id)
    assert job["status"] == "running"
    step = job["steps"]["people"]
    assert (step["state"], step["attempts"], step["failures"], step["retried_at"]) == ("pending", 1, 0, 2000.0)
    assert not {"error", "finished_at", "worker_id", "lease_expires_at", "message_id"} & set(step)
    assert not store.retries.retry_step(OBJ.job_id, "people", 2001.0)  # a second retry finds it pending
    assert store.claims.claim(OBJ.job_id, "people", "w2", "m2", 2002.0, 30).attempt == 2


def test_a_retried_step_can_be_failed_by_its_new_message_dead_lettering(store: JobStore) -> None:
    store.claims.mark_failed(store.claims.claim(OBJ.job_id, "people", "w1", "m1", 1000.0, 30), 1001.0, "PermanentError: corrupt")
    store.retries.retry_step(OBJ.job_id, "people", 2000.0)
    assert store.dead_letters.fail_step(OBJ.job_id, "people", DLQ_REASON, 2100.0, message_id="m2")
    assert raw_job(store, OBJ.job_id)["status"] == "failed"


def test_each_end_of_a_job_is_announced_once(store: JobStore) -> None:
    assert store.claim_announcement(OBJ.job_id, 1001.5)
    assert not store.claim_announcement(OBJ.job_id, 1001.5)  # the same record replayed
    assert store.claim_announcement(OBJ.job_id, 2005.0)  # retried and ended again
    assert not store.claim_announcement(OBJ.job_id, 1001.5)  # the older end replayed after the newer
    store.release_announcement(OBJ.job_id, 1001.5)  # not the current claim: no effect
    assert not store.claim_announcement(OBJ.job_id, 2005.0)
    store.release_announcement(OBJ.job_id, 2005.0)  # publishing failed: the record's retry may announce
    assert store.claim_announcement(OBJ.job_id, 2005.0)
    assert not store.claim_announcement("no-such-job", 1.0)


def _records(store: JobStore) -> tuple[StepRecord, list[SegmentRecord]]:
    job = store.get_job(OBJ.job_id)
    step = job.step("people") if job is not None else None
    assert step is not None
    return step, segment_records(step.segment_count, store.get_segments(OBJ.job_id, "people", step.segment_count))


def _unclaimed(store: JobStore) -> list[int]:
    return unclaimed(*_records(store))


def _split(store: JobStore, minutes: int, now: float = 1000.0) -> SegmentPlan:
    plan = SegmentPlan(VideoTimeline(30, 30 * 60 * minutes, 30), 60)
    store.splits.record_split(store.claims.claim(OBJ.job_id, "people", "w0", "m0", now, 30), plan, now + 1)
    return plan


def test_a_sent_segment_message_is_recorded_unless_a_claim_another_message_or_a_retry_came_first(store: JobStore) -> None:
    _split(store, 4)
    assert _unclaimed(store) == [0, 1, 2, 3]
    assert store.splits.record_segment_message(OBJ.job_id, "people", 0, "m-seg-0", retried_at=None)
    store.claims.claim(OBJ.job_id, "people", "w1", "m-seg-1", 1002.0, 30, segment=1)  # claimed before its id was recorded
    assert not store.splits.record_segment_message(OBJ.job_id, "people", 1, "m-seg-1", retried_at=None)
    assert not store.splits.record_segment_message(OBJ.job_id, "people", 0, "m-seg-0-resent", retried_at=None)  # a resend keeps the first
    segments = raw_segments(store, OBJ.job_id, "people", 4)
    assert (segments[0]["message_id"], segments[1]["message_id"], segments[1]["worker_id"]) == ("m-seg-0", "m-seg-1", "w1")
    assert _unclaimed(store) == [2, 3]
    # Segment 1 fails the step; `gpupipe retry` drops the unfinished segments' messages: a record of a send made
    # before the retry lands late and is refused (its message may be gone); a send after the retry is recorded.
    store.claims.mark_failed(store.claims.claim(OBJ.job_id, "people", "w1", "m-seg-1", 1100.0, 30, segment=1), 1101.0, "bad frames")
    assert store.retries.retry_step(OBJ.job_id, "people", 1200.5)
    assert not store.splits.record_segment_message(OBJ.job_id, "people", 2, "m-seg-2", retried_at=None)
    retried_at = raw_job(store, OBJ.job_id)["steps"]["people"]["retried_at"]
    assert store.splits.resume_split(OBJ.job_id, "people", 1201.0, "m-retry")
    assert store.splits.record_segment_message(OBJ.job_id, "people", 2, "m-seg-2b", retried_at=retried_at)
    assert _unclaimed(store) == [0, 1, 3]


def test_a_step_message_is_needed_only_while_a_segment_has_no_message_or_it_carries_the_merge(store: JobStore) -> None:
    """The splitter's message is never the merge's carrier: a merge is carried by the segment messages that saw the
    set complete, then by the message that claimed it (a job about to merge must not be failed)."""
    _split(store, 2)

    def needed(message_id: str) -> bool:
        return needs_step_message(*_records(store), message_id)

    store.splits.record_segment_message(OBJ.job_id, "people", 0, "m-seg-0", retried_at=None)
    assert store.splits.mark_segment_done(
        store.claims.claim(OBJ.job_id, "people", "w1", "m-seg-0", 1002.0, 30, segment=0), 1003.0, "s3://r/0", {}
    ) == (
        1,
        2,
    )
    assert needed("m0")  # segment 1 was never sent: only m0 sends it
    store.splits.record_segment_message(OBJ.job_id, "people", 1, "m-seg-1", retried_at=None)
    assert not needed("m0")  # every segment left has its message
    assert store.splits.mark_segment_done(
        store.claims.claim(OBJ.job_id, "people", "w2", "m-seg-1", 1004.0, 30, segment=1), 1005.0, "s3://r/1", {}
    ) == (
        2,
        2,
    )
    assert not needed("m0")  # about to merge through m-seg-1
    assert store.claims.claim_merge(OBJ.job_id, "people", "w2", "m-seg-1", 1006.0, 30).message_id == "m-seg-1"
    assert _records(store)[0].carrier == "m-seg-1" and not needed("m0") and needed("m-seg-1")


def test_a_segment_whose_claim_was_taken_over_is_not_counted_done(store: JobStore) -> None:
    _split(store, 2)
    stale = store.claims.claim(OBJ.job_id, "people", "w1", "m-seg-0", 1002.0, 30, segment=0)
    store.claims.claim(OBJ.job_id, "people", "w2", "m-seg-0", 1040.0, 30, segment=0)  # w1 hung past its lease: w2 took it over
    with pytest.raises(ClaimLost):
        store.splits.mark_segment_done(stale, 1050.0, "s3://stale", {})
    segment = raw_segment(store, OBJ.job_id, "people", 0)
    assert (raw_job(store, OBJ.job_id)["steps"]["people"]["segments_done"], segment["worker_id"], segment["state"]) == (0, "w2", "running")


def test_segment_items_are_their_own_items_expiring_with_their_job_and_invisible_to_job_scans(store: JobStore, stack: StepStack) -> None:
    from pipeline_core.records import is_job_item

    _split(store, 3)
    store.claims.claim(OBJ.job_id, "people", "w1", "m-seg-2", 1002.0, 30, segment=2)
    job = raw_job(store, OBJ.job_id)
    segment = raw_segment(store, OBJ.job_id, "people", 2)
    assert segment["expires_at"] == job["expires_at"] and segment["parent_job"] == OBJ.job_id and segment["kind"] == "segment"
    assert "segments" not in job["steps"]["people"]  # the job item holds the plan's parameters, never the segments
    items = stack.table.scan()["Items"]
    assert len(items) == 2 and [item["job_id"] for item in items if is_job_item(item)] == [OBJ.job_id]


def test_a_segment_claimed_while_its_step_waits_for_a_retry_to_resume_is_refused(store: JobStore) -> None:
    _split(store, 2)
    store.claims.mark_failed(store.claims.claim(OBJ.job_id, "people", "w1", "m-seg-0", 1002.0, 30, segment=0), 1003.0, "bad frames")
    with pytest.raises(ClaimRefused) as refused:
        store.claims.claim(OBJ.job_id, "people", "w2", "m-seg-1", 1004.0, 30, segment=1)
    assert refused.value.reason == Refusal.FINISHED
    assert store.retries.retry_step(OBJ.job_id, "people", 1005.0)
    with pytest.raises(ClaimRefused) as refused:
        store.claims.claim(OBJ.job_id, "people", "w2", "m-seg-1", 1006.0, 30, segment=1)
    assert refused.value.reason == Refusal.NOT_RUNNING
    assert store.splits.resume_split(OBJ.job_id, "people", 1007.0, "m-retry")
    assert store.claims.claim(OBJ.job_id, "people", "w2", "m-seg-1", 1008.0, 30, segment=1).attempt == 1


def test_create_claimed_leaves_the_item_that_create_then_claim_leave_and_claims_nothing_that_exists(stack: StepStack) -> None:
    store = JobStore(stack.table)
    one, two = ObjectRef("bucket", "uploads/one.jpg", "v1", 10), ObjectRef("bucket", "uploads/two.jpg", "v1", 10)
    assert store.create_job(one, ["people"], now=1000.0)
    old_way = store.claims.claim(one.job_id, "people", "w1", "m1", now=1000.0, lease_seconds=30)
    new_way = store.claims.create_claimed(two, "people", "w1", "m1", now=1000.0, lease_seconds=30)
    assert new_way is not None and (new_way.attempt, new_way.failures, new_way.step_names) == (1, 0, ("people",))
    assert {**vars(new_way), "job_id": None, "job": None} == {**vars(old_way), "job_id": None, "job": None}
    fields = ("job_id", "key")
    assert {k: v for k, v in raw_job(store, two.job_id).items() if k not in fields} == {
        k: v for k, v in raw_job(store, one.job_id).items() if k not in fields
    }
    # the job exists: nothing is written, the caller claims as usual (and is refused: it is held)
    assert store.claims.create_claimed(two, "people", "w2", "m2", now=1001.0, lease_seconds=30) is None
    assert raw_job(store, two.job_id)["steps"]["people"]["worker_id"] == "w1"
    with pytest.raises(ClaimRefused):
        store.claims.claim(two.job_id, "people", "w2", "m2", now=1001.0, lease_seconds=30)
