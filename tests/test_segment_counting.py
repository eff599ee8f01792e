"""Counting segments done: JobStore.mark_segment_done is a compare-and-set on the step's segments_done, so of
segments finishing together each is counted once and exactly the last records its message as the one that merges;
against the emulator (DynamoDB's item atomicity), with real threads."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError

from pipeline_core.jobs import ObjectRef
from pipeline_core.jobstore import ClaimLost, JobStore
from pipeline_core.segments import VideoTimeline, needs_step_message, plan_segments
from tests.support.aws import StepStack, clients
from tests.support.interleave import AfterFirstCount

pytestmark = pytest.mark.integration

OBJ = ObjectRef("bucket", "uploads/long.mp4", "v1", 10)


def own_store(stack: StepStack) -> JobStore:
    """A JobStore with its own boto3 session (boto3 resources are not shared across threads)."""
    return JobStore(clients(stack.endpoint)["dynamodb"].Table(stack.table_name))


def split(store: JobStore, segments: int) -> None:
    assert store.create_job(OBJ, ["people"], now=1000.0)
    plan = plan_segments(VideoTimeline(30, 30 * 60 * segments, 30), 60)
    assert len(plan) == segments
    store.record_split(store.claim(OBJ.job_id, "people", "w-split", "m-step", 1000.0, 30), plan, 60, 1001.0)


def finish_together(stack: StepStack, claims: dict[int, Any]) -> dict[int, Any]:
    """Every claim's worker calls mark_segment_done at the same moment, each with its own JobStore: their results."""
    stores = {i: own_store(stack) for i in claims}
    barrier = threading.Barrier(len(claims))
    results: dict[int, Any] = {}

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = stores[i].mark_segment_done(claims[i], 2000.0, f"s3://r/{i}", {"total": 1.0})
        except Exception as error:  # noqa: BLE001 - reported by the test
            results[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in claims]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


@pytest.mark.parametrize("segments", [2, 8])
def test_many_segments_finishing_together_count_once_each_and_the_last_records_itself(stack: StepStack, segments: int) -> None:
    store = JobStore(stack.table)
    split(store, segments)
    claims = {i: store.claim(OBJ.job_id, "people", f"w{i}", f"m-seg-{i}", 1002.0, 600, segment=i) for i in range(segments)}
    results = finish_together(stack, claims)
    errors = {i: r for i, r in results.items() if isinstance(r, Exception)}
    assert not errors, errors
    assert sorted(done for done, _ in results.values()) == list(range(1, segments + 1))
    [completer] = [i for i, r in results.items() if r == (segments, segments)]
    step = store.get_job(OBJ.job_id)["steps"]["people"]
    assert step["segments_done"] == segments
    assert step["message_id"] == f"m-seg-{completer}"
    assert needs_step_message(step, f"m-seg-{completer}") and not needs_step_message(step, "m-step")


def test_after_retry_the_remaining_segments_finishing_together_record_the_last(stack: StepStack) -> None:
    """gpupipe retry keeps done segments: segments_done starts at 3 of 6, three retried segments finish together."""
    store = JobStore(stack.table)
    split(store, 6)
    for i in range(3):
        store.mark_segment_done(store.claim(OBJ.job_id, "people", f"w{i}", f"m-seg-{i}", 1002.0, 600, segment=i), 1003.0, "s3://r", {})
    store.mark_failed(store.claim(OBJ.job_id, "people", "w3", "m-seg-3", 1004.0, 600, segment=3), 1005.0, "bad frames")
    assert store.retry_failed_step(OBJ.job_id, "people", 1100.0)
    assert store.resume_split(OBJ.job_id, "people", 1101.0, "m-retry")
    claims = {i: store.claim(OBJ.job_id, "people", f"v{i}", f"m2-seg-{i}", 1102.0, 600, segment=i) for i in range(3, 6)}
    results = finish_together(stack, claims)
    assert not [r for r in results.values() if isinstance(r, Exception)], results
    assert sorted(done for done, _ in results.values()) == [4, 5, 6]
    [completer] = [i for i, r in results.items() if r == (6, 6)]
    step = store.get_job(OBJ.job_id)["steps"]["people"]
    assert step["message_id"] == f"m2-seg-{completer}"


class _Replayed:
    """The moto table, where the first counting update is applied but its answer is lost, so the SDK sends the
    same request again (what botocore does after a 5xx or a connection reset when DynamoDB applied the write)."""

    def __init__(self, table: Any):
        self.table, self.fired = table, False

    def update_item(self, **request: Any) -> Any:
        if not self.fired and "segments_done + :one" in request.get("UpdateExpression", ""):
            with contextlib.suppress(ClientError):
                self.table.update_item(**request)  # applied (or refused) by DynamoDB; the answer never arrives
                self.fired = True
        return self.table.update_item(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.table, name)


def test_the_completing_segment_whose_answer_was_lost_is_not_reported_lost(stack: StepStack) -> None:
    """The update that completed the set was applied; its answer was lost and the SDK's retry was refused. Taken for
    a lost claim, the worker would not merge, and the merge would wait for a redelivery that spends a receive."""
    store = JobStore(stack.table)
    split(store, 2)
    store.mark_segment_done(store.claim(OBJ.job_id, "people", "w0", "m-seg-0", 1002.0, 600, segment=0), 1003.0, "s3://r/0", {})
    claim = store.claim(OBJ.job_id, "people", "w1", "m-seg-1", 1002.0, 600, segment=1)
    try:
        result = JobStore(_Replayed(stack.table)).mark_segment_done(claim, 1004.0, "s3://r/1", {})
    except ClaimLost as lost:
        step = store.get_job(OBJ.job_id)["steps"]["people"]
        pytest.fail(
            f"ClaimLost ({lost}) though this claim's own update counted it: segment 1 is "
            f"{step['segments']['1']['state']} by {step['segments']['1']['worker_id']} attempt {step['segments']['1']['attempts']}, "
            f"segments_done {step['segments_done']}/{step['segment_count']}, step message_id {step['message_id']!r}"
        )
    assert result == (2, 2)
    # The same for a segment that was not the last: counted once, and not taken for the one that merges.
    store.create_job(other := ObjectRef("bucket", "uploads/other.mp4", "v1", 10), ["people"], now=1000.0)
    store.record_split(
        store.claim(other.job_id, "people", "w-split", "m-step-2", 1000.0, 30),
        plan_segments(VideoTimeline(30, 30 * 120, 30), 60),
        60,
        1001.0,
    )
    first = store.claim(other.job_id, "people", "w0", "m2-seg-0", 1002.0, 600, segment=0)
    assert JobStore(_Replayed(stack.table)).mark_segment_done(first, 1003.0, "s3://r/0", {}) == (1, 2)


def test_a_retry_landing_between_the_refusal_and_the_reread_loses_the_claim_and_counts_once(stack: StepStack) -> None:
    store = JobStore(stack.table)
    split(store, 3)
    mine = store.claim(OBJ.job_id, "people", "w0", "m-seg-0", 1002.0, 600, segment=0)
    new: dict[str, Any] = {}

    def retry_and_reclaim() -> None:
        store.mark_failed(store.claim(OBJ.job_id, "people", "w1", "m-seg-1", 1003.0, 600, segment=1), 1004.0, "bad")
        assert store.retry_failed_step(OBJ.job_id, "people", 1005.0)
        assert store.resume_split(OBJ.job_id, "people", 1006.0, "m-retry")
        new["claim"] = store.claim(OBJ.job_id, "people", "w0", "m2-seg-0", 1007.0, 600, segment=0)  # same worker id

    with pytest.raises(ClaimLost):
        JobStore(AfterFirstCount(stack.table, retry_and_reclaim)).mark_segment_done(mine, 1008.0, "s3://stale", {})
    assert store.mark_segment_done(new["claim"], 1009.0, "s3://r/0", {}) == (1, 3)
