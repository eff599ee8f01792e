"""Counting segments done: JobStore.mark_segment_done moves the segment's own item to done and adds one to the step's
segments_done in one transaction, so of segments finishing together each is counted once, the last to be counted
reads the set complete, and of all that read it complete exactly one claims the merge; against the emulator
(DynamoDB's item atomicity), with real threads."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError

from pipeline_core.jobs import ObjectRef
from pipeline_core.jobstore import ClaimLost, ClaimRefused, JobStore
from pipeline_core.segment_plan import SegmentPlan, VideoTimeline
from tests.support.aws import StepStack, clients
from tests.support.interleave import AfterFirstCount
from tests.support.items import raw_job, raw_segment, raw_segments

pytestmark = pytest.mark.integration

OBJ = ObjectRef("bucket", "uploads/long.mp4", "v1", 10)


def own_store(stack: StepStack) -> JobStore:
    """A JobStore with its own boto3 session (boto3 resources are not shared across threads)."""
    return JobStore(clients(stack.endpoint)["dynamodb"].Table(stack.table_name))


def split(store: JobStore, segments: int) -> None:
    assert store.create_job(OBJ, ["people"], now=1000.0)
    plan = SegmentPlan(VideoTimeline(30, 30 * 60 * segments, 30), 60)
    assert plan.count == segments
    store.splits.record_split(store.claims.claim(OBJ.job_id, "people", "w-split", "m-step", 1000.0, 30), plan, 1001.0)


def merges(store: JobStore, results: dict[int, Any], total: int) -> list[int]:
    """Every worker that read the set complete tries the merge, as the lifecycle does: those whose claim_merge took."""
    won = []
    for i, (done, planned) in results.items():
        if done == planned == total:
            try:
                store.claims.claim_merge(OBJ.job_id, "people", f"w{i}", f"m-seg-{i}", 2001.0, 600)
                won.append(i)
            except ClaimRefused:
                pass
    return won


def finish_together(stack: StepStack, claims: dict[int, Any]) -> dict[int, Any]:
    """Every claim's worker calls mark_segment_done at the same moment, each with its own JobStore: their results."""
    stores = {i: own_store(stack) for i in claims}
    barrier = threading.Barrier(len(claims))
    results: dict[int, Any] = {}

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = stores[i].splits.mark_segment_done(claims[i], 2000.0, f"s3://r/{i}", {"total": 1.0})
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
    claims = {i: store.claims.claim(OBJ.job_id, "people", f"w{i}", f"m-seg-{i}", 1002.0, 600, segment=i) for i in range(segments)}
    results = finish_together(stack, claims)
    errors = {i: r for i, r in results.items() if isinstance(r, Exception)}
    assert not errors, errors
    assert all(1 <= done <= segments for done, _ in results.values())
    assert (segments, segments) in results.values()  # the last to be counted reads the set complete
    step = raw_job(store, OBJ.job_id)["steps"]["people"]
    assert step["segments_done"] == segments
    assert {s["state"] for s in raw_segments(store, OBJ.job_id, "people", segments).values()} == {"done"}
    assert len(merges(store, results, segments)) == 1  # each completed split merges once


def test_after_retry_the_remaining_segments_finishing_together_record_the_last(stack: StepStack) -> None:
    """gpupipe retry keeps done segments: segments_done starts at 3 of 6, three retried segments finish together."""
    store = JobStore(stack.table)
    split(store, 6)
    for i in range(3):
        store.splits.mark_segment_done(
            store.claims.claim(OBJ.job_id, "people", f"w{i}", f"m-seg-{i}", 1002.0, 600, segment=i), 1003.0, "s3://r", {}
        )
    store.claims.mark_failed(store.claims.claim(OBJ.job_id, "people", "w3", "m-seg-3", 1004.0, 600, segment=3), 1005.0, "bad frames")
    assert store.retries.retry_step(OBJ.job_id, "people", 1100.0)
    assert store.splits.resume_split(OBJ.job_id, "people", 1101.0, "m-retry")
    claims = {i: store.claims.claim(OBJ.job_id, "people", f"v{i}", f"m2-seg-{i}", 1102.0, 600, segment=i) for i in range(3, 6)}
    results = finish_together(stack, claims)
    assert not [r for r in results.values() if isinstance(r, Exception)], results
    assert all(4 <= done <= 6 for done, _ in results.values()) and (6, 6) in results.values()
    assert raw_job(store, OBJ.job_id)["steps"]["people"]["segments_done"] == 6
    assert len(merges(store, results, 6)) == 1


class _Replayed:
    """The moto table, where the first counting transaction is applied but its answer is lost, so the SDK sends the
    same request again (what botocore does after a 5xx or a connection reset when DynamoDB applied the write; moto,
    unlike DynamoDB, ignores the idempotency token and refuses the replay)."""

    def __init__(self, table: Any):
        self.table, self.fired = table, False
        self.meta = self

    @property
    def client(self) -> Any:
        return self

    def transact_write_items(self, **request: Any) -> Any:
        if not self.fired:
            with contextlib.suppress(ClientError):
                self.table.meta.client.transact_write_items(**request)  # applied by DynamoDB; the answer never arrives
                self.fired = True
        return self.table.meta.client.transact_write_items(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.table, name)


def test_the_completing_segment_whose_answer_was_lost_is_not_reported_lost(stack: StepStack) -> None:
    """The update that completed the set was applied; its answer was lost and the SDK's retry was refused. Taken for
    a lost claim, the worker would not merge, and the merge would wait for a redelivery that spends a receive."""
    store = JobStore(stack.table)
    split(store, 2)
    store.splits.mark_segment_done(
        store.claims.claim(OBJ.job_id, "people", "w0", "m-seg-0", 1002.0, 600, segment=0), 1003.0, "s3://r/0", {}
    )
    claim = store.claims.claim(OBJ.job_id, "people", "w1", "m-seg-1", 1002.0, 600, segment=1)
    try:
        result = JobStore(_Replayed(stack.table)).splits.mark_segment_done(claim, 1004.0, "s3://r/1", {})
    except ClaimLost as lost:
        step, segment = raw_job(store, OBJ.job_id)["steps"]["people"], raw_segment(store, OBJ.job_id, "people", 1)
        pytest.fail(
            f"ClaimLost ({lost}) though this claim's own transaction counted it: segment 1 is {segment['state']} by "
            f"{segment['worker_id']} attempt {segment['attempts']}, segments_done {step['segments_done']}/{step['segment_count']}"
        )
    assert result == (2, 2)
    # The same for a segment that was not the last: counted once, and not taken for the one that merges.
    store.create_job(other := ObjectRef("bucket", "uploads/other.mp4", "v1", 10), ["people"], now=1000.0)
    store.splits.record_split(
        store.claims.claim(other.job_id, "people", "w-split", "m-step-2", 1000.0, 30),
        SegmentPlan(VideoTimeline(30, 30 * 120, 30), 60),
        1001.0,
    )
    first = store.claims.claim(other.job_id, "people", "w0", "m2-seg-0", 1002.0, 600, segment=0)
    assert JobStore(_Replayed(stack.table)).splits.mark_segment_done(first, 1003.0, "s3://r/0", {}) == (1, 2)


def test_gpupipe_retry_leaves_a_segment_a_live_worker_holds_to_it_and_its_count_lands_once(stack: StepStack) -> None:
    """`gpupipe retry` of a step failed by one segment put a segment another
    worker still ran (live lease) back to pending, so a second worker could run it meanwhile. Now the retry leaves it
    to its holder, whose count lands once; the failed segment goes back to pending."""
    store = JobStore(stack.table)
    split(store, 3)
    mine = store.claims.claim(OBJ.job_id, "people", "w0", "m-seg-0", 1002.0, 600, segment=0)
    store.claims.mark_failed(store.claims.claim(OBJ.job_id, "people", "w1", "m-seg-1", 1003.0, 600, segment=1), 1004.0, "bad")
    assert store.retries.retry_step(OBJ.job_id, "people", 1005.0)
    held, failed = raw_segment(store, OBJ.job_id, "people", 0), raw_segment(store, OBJ.job_id, "people", 1)
    assert (held["state"], held["worker_id"]) == ("running", "w0")
    assert (failed["state"], failed["failures"], "message_id" in failed) == ("pending", 0, False)
    assert store.splits.resume_split(OBJ.job_id, "people", 1006.0, "m-retry")
    with pytest.raises(ClaimRefused):
        store.claims.claim(OBJ.job_id, "people", "w9", "m2-seg-0", 1007.0, 600, segment=0)  # held: no second worker runs it
    assert store.splits.mark_segment_done(mine, 1008.0, "s3://r/0", {}) == (1, 3)


def test_a_retry_landing_after_the_count_keeps_the_done_segment(stack: StepStack) -> None:
    store = JobStore(stack.table)
    split(store, 3)
    mine = store.claims.claim(OBJ.job_id, "people", "w0", "m-seg-0", 1002.0, 600, segment=0)

    def fail_and_retry() -> None:
        store.claims.mark_failed(store.claims.claim(OBJ.job_id, "people", "w1", "m-seg-1", 1003.0, 600, segment=1), 1004.0, "bad")
        assert store.retries.retry_step(OBJ.job_id, "people", 1005.0)

    assert JobStore(AfterFirstCount(stack.table, fail_and_retry)).splits.mark_segment_done(mine, 1008.0, "s3://r/0", {})[0] == 1
    assert raw_segment(store, OBJ.job_id, "people", 0)["state"] == "done"
    assert raw_job(store, OBJ.job_id)["steps"]["people"]["segments_done"] == 1


class _Counting:
    """The table, counting the writes that count segments (transactions) and every refused one."""

    def __init__(self, table: Any, counts: dict[str, int]):
        self.table, self.counts = table, counts
        self.meta = self

    @property
    def client(self) -> Any:
        return self

    def transact_write_items(self, **request: Any) -> Any:
        self.counts["writes"] += 1
        try:
            return self.table.meta.client.transact_write_items(**request)
        except ClientError:
            self.counts["refused"] += 1
            raise

    def update_item(self, **request: Any) -> Any:
        self.counts["writes"] += 1
        try:
            return self.table.update_item(**request)
        except ClientError:
            self.counts["refused"] += 1
            raise

    def __getattr__(self, name: str) -> Any:
        if name == "batch_get_item":
            return self.table.meta.client.batch_get_item
        return getattr(self.table, name)


def test_n_segments_finishing_together_cost_n_writes_not_n_squared(stack: StepStack) -> None:
    """A compare-and-set on segments_done would cost about n²/2 refused writes when n segments finish together (16
    at once: ~120 updates instead of 16): the counter is one increment in each segment's transaction."""
    store = JobStore(stack.table)
    split(store, 8)
    claims = {i: store.claims.claim(OBJ.job_id, "people", f"w{i}", f"m-seg-{i}", 1002.0, 600, segment=i) for i in range(8)}
    counts = {"writes": 0, "refused": 0}
    stores = {i: JobStore(_Counting(own_store(stack).table.resource, counts)) for i in claims}
    barrier = threading.Barrier(len(claims))

    def run(i: int) -> None:
        barrier.wait()
        stores[i].splits.mark_segment_done(claims[i], 2000.0, f"s3://r/{i}", {})

    threads = [threading.Thread(target=run, args=(i,)) for i in claims]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert counts == {"writes": 8, "refused": 0}
    assert raw_job(store, OBJ.job_id)["steps"]["people"]["segments_done"] == 8
