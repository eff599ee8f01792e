"""Long videos under faults, real workers against moto: merges handed back or failing, a splitter killed mid-send, retries."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline_core.bodies import parse_body
from pipeline_core.jobs import ORIGIN_ATTRIBUTE, WorkMessage
from pipeline_core.jobstore import JobStore
from pipeline_core.protocol.decisions import unclaimed
from pipeline_core.records import segment_records
from pipeline_core.segment_plan import SegmentPlan, VideoTimeline
from tests.support import deadletters
from tests.support.aws import StepStack
from tests.support.faultproxy import FaultProxy
from tests.support.items import raw_job, raw_segment, raw_segments
from tests.support.workers import wait_for
from tests.test_segments_workers import (
    KEY,
    STEP,
    assert_merged_equals_one_pass,
    env,
    events,
    finished,
    one_pass,
    segment_attempts,
    upload,
)
from tools.sample_media import long_video
from worker.config import WorkerConfig
from worker.keepalive import TaskProtection
from worker.registry import load_processor
from worker.runtime import Worker
from worker.splitter import Splitter

pytestmark = pytest.mark.workers

SECONDS, FPS = 40, 10


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return long_video(tmp_path / "long.avi", SECONDS, FPS)


def _step(stack: StepStack) -> dict:
    return stack.job(KEY).get("steps", {}).get(STEP, {})


def _dlq(stack: StepStack) -> list[dict]:
    return stack.aws["sqs"].receive_message(QueueUrl=stack.dlq_url, WaitTimeSeconds=0, MaxNumberOfMessages=10).get("Messages") or []


# --- attack 2: the merging worker is SIGTERMed mid-merge (hand-back of a merging claim) -----------------------


def test_merge_handed_back_on_sigterm_is_merged_again_by_the_requeued_segment_message(
    moto_endpoint: str, proxy: FaultProxy, spawn, video: Path, tmp_path: Path
) -> None:
    stack = StepStack.create(moto_endpoint, visibility_timeout=6)
    upload(stack, video)
    proxy.add("UpdateItem", body_contains="merge_started_at", delay=3.0, times=1)  # a window to act in
    merger = spawn(env(stack, 0.05, AWS_ENDPOINT_URL=proxy.url, GRACE_SECONDS=1), "merger")
    # All segments done: only the merge's reads are left; slow them so the merge outlasts the grace period.
    wait_for(lambda: int(_step(stack).get("segments_done") or 0) == 4, 90, interval=0.05, what="every segment done")
    proxy.add("S3.GET", delay=8.0)
    merger.signal(signal.SIGTERM)
    merger.wait(60)
    assert merger.events("step released on shutdown"), [e.get("event") for e in merger.logs()][-15:]
    assert _step(stack)["state"] == "running"
    second = spawn(env(stack), "second")
    job = finished(stack, 60)
    assert_merged_equals_one_pass(stack, job, one_pass(video, tmp_path))
    assert segment_attempts(job) == [1, 1, 1, 1]
    assert len(second.events("merge done")) == 1 and not second.events("segment claimed")
    wait_for(lambda: stack.counts() == (0, 0), 20, what="the queue to drain")
    assert not _dlq(stack)


# --- attack 2: a merge that keeps failing transiently ends the job (budget) -----------------------------------


def test_a_merge_that_always_fails_transiently_fails_the_job_after_max_attempts(
    moto_endpoint: str, proxy: FaultProxy, spawn, video: Path
) -> None:
    stack = StepStack.create(moto_endpoint, visibility_timeout=6, max_attempts=3)
    upload(stack, video)
    # mark_done (the merge's commit) is refused, not retried by botocore: a transient failure each time.
    proxy.add("UpdateItem", body_contains="#result_file", error=(400, "ValidationException", "simulated"))
    workers = [spawn(env(stack, AWS_ENDPOINT_URL=proxy.url), f"w{n}") for n in range(2)]
    job = finished(stack, 120)
    step = job["steps"][STEP]
    assert job["status"] == "failed", step
    assert step["error"].startswith("merge: gave up after 3 attempts"), step["error"]
    assert segment_attempts(job) == [1, 1, 1, 1]
    assert len(events(workers, "merge claimed")) == 3
    wait_for(lambda: stack.counts() == (0, 0), 20, what="the queue to drain")
    assert not _dlq(stack)


# --- attack 4: SIGKILL between record_split and the segment messages' send --------------------------------------


def test_a_splitter_killed_before_it_sends_the_segment_messages_is_resumed_by_the_step_message(
    moto_endpoint: str, proxy: FaultProxy, spawn, video: Path, tmp_path: Path
) -> None:
    stack = StepStack.create(moto_endpoint, visibility_timeout=4)
    upload(stack, video)
    proxy.add("SendMessageBatch", delay=60.0)
    splitter = spawn(env(stack, AWS_ENDPOINT_URL=proxy.url), "splitter")
    wait_for(lambda: _step(stack).get("segment_count"), 60, interval=0.05, what="the split to be recorded")
    time.sleep(0.5)  # inside the delayed SendMessageBatch
    splitter.signal(signal.SIGKILL)
    splitter.wait()
    assert stack.counts()[0] == 0  # no segment message was sent
    second = spawn(env(stack), "second")
    job = finished(stack, 90)
    assert_merged_equals_one_pass(stack, job, one_pass(video, tmp_path))
    assert segment_attempts(job) == [1, 1, 1, 1]
    assert second.events("step message settled: the step is split into segments")
    wait_for(lambda: stack.counts() == (0, 0), 20, what="the queue to drain")
    assert not _dlq(stack)


def test_a_refused_send_of_the_segment_messages_is_retried_after_the_retry_delay_not_the_visibility_timeout(
    moto_endpoint: str, proxy: FaultProxy, spawn, video: Path, tmp_path: Path
) -> None:
    # The split is recorded, then SQS refuses the segment messages once: the step message must come back
    # soon (a requeued copy after the retry delay) and resume the sends, not wait out a long visibility.
    stack = StepStack.create(moto_endpoint, visibility_timeout=120)
    upload(stack, video)
    proxy.add("SendMessageBatch", error=(400, "AWS.SimpleQueueService.BatchRequestTooLong", "simulated refusal"), times=1)
    worker = spawn(env(stack, AWS_ENDPOINT_URL=proxy.url), "splitter")
    job = finished(stack, 60)
    assert_merged_equals_one_pass(stack, job, one_pass(video, tmp_path))
    assert segment_attempts(job) == [1, 1, 1, 1]
    assert worker.events("step message settled: the step is split into segments")
    wait_for(lambda: stack.counts() == (0, 0), 20, what="the queue to drain")
    assert not _dlq(stack)


# --- attack 1: hand-ons and postponements use up no receive: with maxReceiveCount=1 nothing is dead-lettered ----


def test_segment_hand_ons_and_duplicates_use_up_no_receive(moto_endpoint: str, spawn, video: Path, tmp_path: Path) -> None:
    stack = StepStack.create(moto_endpoint, max_receive_count=1)
    upload(stack, video)
    workers = [spawn(env(stack, 0.1, CONCURRENCY=4, SEGMENTS_IN_FLIGHT=1), f"w{n}") for n in range(2)]
    wait_for(lambda: _step(stack).get("segment_count"), 40, what="the split")
    base = WorkMessage.for_job(stack.object_ref(KEY), STEP)
    for index in range(4):
        stack.send(base.for_segment(index).to_body())
    job = finished(stack, 120)
    assert_merged_equals_one_pass(stack, job, one_pass(video, tmp_path))
    assert segment_attempts(job) == [1, 1, 1, 1]
    wait_for(lambda: stack.counts() == (0, 0), 30, what="the queue to drain")
    time.sleep(1)
    assert not _dlq(stack), "a message was dead-lettered although nothing failed"
    assert [e for e in events(workers, "message requeued") if "handed on" in e["why"]]


# --- attack 1: SIGTERM a worker at the segment limit; its segment is handed back and finished by another ----------


def test_a_worker_at_the_segment_limit_stopped_hands_back_and_the_job_ends(moto_endpoint: str, spawn, video: Path, tmp_path: Path) -> None:
    stack = StepStack.create(moto_endpoint, visibility_timeout=6, max_receive_count=2)
    upload(stack, video)
    doomed = spawn(env(stack, 0.4, CONCURRENCY=4, SEGMENTS_IN_FLIGHT=2, GRACE_SECONDS=0.5), "doomed")
    wait_for(lambda: len(doomed.events("segment claimed")) >= 2, 60, interval=0.05, what="two segments in flight")
    doomed.signal(signal.SIGTERM)
    assert doomed.wait(60) == 0
    survivors = [spawn(env(stack, 0.02, CONCURRENCY=4, SEGMENTS_IN_FLIGHT=1), f"s{n}") for n in range(2)]
    job = finished(stack, 90)
    assert_merged_equals_one_pass(stack, job, one_pass(video, tmp_path))
    assert len(events(survivors, "merge done")) == 1
    wait_for(lambda: stack.counts() == (0, 0), 20, what="the queue to drain")
    assert not _dlq(stack)


# --- attack 3: gpupipe retry of a job failed by a segment, with stale duplicate segment messages queued ------------


def test_retry_with_stale_duplicate_segment_messages_queued_reruns_only_what_failed(
    stack: StepStack, spawn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gpupipe.cli import main

    path = long_video(tmp_path / "corrupt.avi", SECONDS, FPS, red_between=(24, 26))
    upload(stack, path)
    workers = [spawn(env(stack), f"w{n}") for n in range(2)]
    assert finished(stack)["status"] == "failed"
    wait_for(lambda: stack.counts() == (0, 0), 20, what="every segment message to be settled")
    for worker in workers:
        worker.stop()
    before = stack.job(KEY)["steps"][STEP]["segments"]
    done = {key: (sub["attempts"], sub["result_file"]) for key, sub in before.items() if sub["state"] == "done"}

    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.endpoint)
    outputs = tmp_path / "stack.json"
    names = {"bucket_name": stack.bucket, "input_prefix": "uploads/", "results_prefix": "results/", "jobs_table_name": stack.table_name}
    outputs.write_text(json.dumps(names))
    assert main(["--outputs", str(outputs), "retry", "long.avi"]) == 0
    base = WorkMessage.for_job(stack.object_ref(KEY), STEP)
    for index in range(4):  # stale duplicates of every segment, ahead of the router's step message
        stack.send(base.for_segment(index).to_body())
    stack.send(base.to_body())
    attempts_before = int(before["2"]["attempts"])
    later = [spawn(env(stack), f"later{n}") for n in range(2)]
    job = wait_for(
        lambda: (j := stack.job(KEY))["status"] == "failed" and int(j["steps"][STEP]["segments"]["2"]["attempts"]) > attempts_before and j,
        90,
        what="the retried segment to run and fail again",
    )
    step = job["steps"][STEP]
    assert step["error"] == "segment 3/4 [20 s, 30 s): PermanentError: corrupt frame data"
    assert {key: (step["segments"][key]["attempts"], step["segments"][key]["result_file"]) for key in done} == done
    wait_for(lambda: stack.counts() == (0, 0), 20, what="every message to be settled")
    assert not _dlq(stack)
    assert not events(later, "merge claimed")


# --- attack 3 (contract): `gpupipe retry` of a long video must fit DynamoDB's expression limits --------------------

DYNAMODB_MAX_EXPRESSION_BYTES = 4096  # "The maximum length of any expression string is 4 KB" (DynamoDB constraints)


class _Recording:
    """The moto table, recording each update_item request as sent (the request, not a configured answer)."""

    def __init__(self, table: object):
        self.table, self.requests = table, []

    def update_item(self, **request: object) -> object:
        self.requests.append(request)
        return self.table.update_item(**request)

    def __getattr__(self, name: str) -> object:
        return getattr(self.table, name)


@pytest.mark.parametrize("segments", [20, 40])  # 20 and 40 min at the default 60-s segments
def test_retry_of_a_long_video_failed_early_sends_expressions_dynamodb_accepts(stack: StepStack, segments: int) -> None:
    from pipeline_core.jobs import ObjectRef
    from pipeline_core.jobstore import JobStore
    from pipeline_core.segment_plan import SegmentPlan, VideoTimeline

    obj = ObjectRef(stack.bucket, "uploads/long.mp4", "etag", 1)
    store = JobStore(stack.table)
    store.create_job(obj, [STEP], 1000.0)
    plan = SegmentPlan(VideoTimeline(fps=25.0, frame_count=segments * 60 * 25, sample_step=25), 60.0)
    assert plan.count == segments
    store.splits.record_split(store.claims.claim(obj.job_id, STEP, "w", "m", 1000.0, 60), plan, 1001.0)
    # Segment 0 hit a corrupt frame at once: the step failed while every other segment was still pending.
    store.splits.mark_segment_done(
        store.claims.claim(obj.job_id, STEP, "w1", "m1", 1002.0, 60, segment=1), 1003.0, "s3://b/one/result.json", {}
    )
    store.claims.mark_failed(
        store.claims.claim(obj.job_id, STEP, "w0", "m0", 1002.0, 60, segment=0), 1004.0, "PermanentError: corrupt frame data"
    )
    done_before = raw_segment(store, obj.job_id, STEP, 1)
    table = _Recording(stack.table)
    retried = JobStore(table).retries.retry_step(obj.job_id, STEP, time.time())
    for request in table.requests:
        sizes = {name: len(request[name].encode()) for name in ("UpdateExpression", "ConditionExpression")}
        assert all(size <= DYNAMODB_MAX_EXPRESSION_BYTES for size in sizes.values()), sizes
    assert retried is True, retried
    after = raw_job(store, obj.job_id)["steps"][STEP]
    items = raw_segments(store, obj.job_id, STEP, segments)
    assert after["state"] == "pending" and after["segments_done"] == 1
    assert items[1] == done_before, "a done segment is kept as it was"
    assert (items[0]["state"], items[0]["attempts"], items[0]["failures"], "error" in items[0]) == ("pending", 1, 0, False)
    assert all(items[index]["state"] == "pending" for index in range(segments) if index != 1)


# --- `gpupipe retry` of a failed merge, and the worker merging through the step's message is killed -----


def test_a_retried_merge_whose_worker_is_killed_is_merged_by_the_step_messages_next_receive(
    moto_endpoint: str, proxy: FaultProxy, spawn, video: Path, tmp_path: Path
) -> None:
    stack = StepStack.create(moto_endpoint, visibility_timeout=4, max_attempts=2)
    upload(stack, video)
    proxy.add("UpdateItem", body_contains="#result_file", error=(400, "ValidationException", "simulated"))  # the merge's commit
    first = spawn(env(stack, AWS_ENDPOINT_URL=proxy.url), "first")
    job = finished(stack, 90)
    assert job["status"] == "failed" and job["steps"][STEP]["error"].startswith("merge: "), job["steps"][STEP].get("error")
    wait_for(lambda: stack.counts() == (0, 0), 20, what="the queue to drain")
    first.stop()
    proxy.clear()

    # gpupipe retry: every segment is done, so the step's message (sent again by the router) is the only one that merges.
    assert JobStore(stack.table).retries.retry_step(stack.object_ref(KEY).job_id, STEP, time.time())
    stack.send(WorkMessage.for_job(stack.object_ref(KEY), STEP).to_body())
    proxy.add("UpdateItem", body_contains="#result_file", delay=120.0)  # the merge's commit hangs, and its worker is killed
    merger = spawn(env(stack, AWS_ENDPOINT_URL=proxy.url), "merger")
    wait_for(lambda: merger.events("merge claimed"), 60, what="the retried merge to start")
    merger.signal(signal.SIGKILL)
    merger.wait()

    second = spawn(env(stack), "second")
    job = finished(stack, 60)  # before: the step's message came back "held by this message" and was postponed forever
    assert job["status"] == "succeeded", job["steps"][STEP].get("error")  # the takeover is failure 1 of the fresh budget of 2
    assert_merged_equals_one_pass(stack, job, one_pass(video, tmp_path))
    assert len(second.events("merge claimed")) == 1 and not second.events("segment claimed")


# --- a splitter's record of a segment message landing after `gpupipe retry` ------------------------------

INTERLEAVED_STEP, INTERLEAVED_KEY = "detect", "uploads/interleaved.mp4"


class _Interleaving:
    """The real SQS client; after SQS accepts a batch and before its answer reaches the caller, ``meanwhile`` runs."""

    def __init__(self, sqs: Any, meanwhile: Callable[[dict[str, Any]], None]):
        self.sqs, self.meanwhile = sqs, meanwhile

    def send_message_batch(self, **request: Any) -> dict[str, Any]:
        response = self.sqs.send_message_batch(**request)
        self.meanwhile(response)
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sqs, name)


def _worker(stack: StepStack, name: str) -> Worker:
    """The real worker's message handling (claim, lifecycle, settle), in this process."""
    return Worker(
        WorkerConfig.from_env(stack.worker_env(INTERLEAVED_STEP, WORKER_ID=name)),
        sqs=stack.aws["sqs"],
        s3=stack.aws["s3"],
        store=JobStore(stack.table),
        processor=load_processor("media-info", {}),
        stop=threading.Event(),
        protection=TaskProtection(None),
    )


def _receive(stack: StepStack) -> list[dict[str, Any]]:
    return (
        stack.aws["sqs"]
        .receive_message(
            QueueUrl=stack.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
            MessageAttributeNames=[ORIGIN_ATTRIBUTE],
        )
        .get("Messages", [])
    )


def test_a_segment_message_id_recorded_after_a_retry_is_refused_so_the_resumed_step_sends_the_segment_again(
    stack: StepStack,
) -> None:
    stack.put(INTERLEAVED_KEY, b"not a video at all")  # every segment fails permanently on it: the first to run fails the step
    obj = stack.object_ref(INTERLEAVED_KEY)
    store = JobStore(stack.table)
    assert store.create_job(obj, [INTERLEAVED_STEP], time.time())
    worker = _worker(stack, "w-real")
    step_body = WorkMessage.for_job(obj, INTERLEAVED_STEP).to_body()
    [item] = parse_body(step_body, INTERLEAVED_STEP).items
    # The step's message S was claimed by the splitter, which recorded the plan (three segments).
    claim = store.claims.claim(obj.job_id, INTERLEAVED_STEP, "w-splitter", "m-step", time.time(), 300)
    store.splits.record_split(claim, SegmentPlan(VideoTimeline(30, 30 * 180, 30), 60), time.time())

    def meanwhile(response: dict[str, Any]) -> None:
        assert len(response["Successful"]) == 3
        messages = _receive(stack)
        assert sorted(parse_body(m["Body"], INTERLEAVED_STEP).items[0].segment for m in messages) == [0, 1, 2]
        for message in sorted(messages, key=lambda m: parse_body(m["Body"], INTERLEAVED_STEP).items[0].segment):
            worker.handle(message, worker.hold(message, time.time()))  # segment 0 fails the step; 1 and 2 are then "finished": deleted
        assert raw_job(store, obj.job_id)["status"] == "failed"
        assert stack.counts() == (0, 0)
        assert store.retries.retry_step(obj.job_id, INTERLEAVED_STEP, time.time())  # `gpupipe retry`: segments back to pending, no message

    Splitter(_Interleaving(stack.aws["sqs"], meanwhile), None, store, stack.queue_url, 60, None).send(item, [0, 1, 2], None)  # type: ignore[arg-type]

    # The router sends the retried step's message; a worker takes it: Refusal.SPLIT -> Splitter.resume.
    stack.send(step_body)
    [message] = _receive(stack)
    worker.handle(message, worker.hold(message, time.time()))
    step = raw_job(store, obj.job_id)["steps"][INTERLEAVED_STEP]
    items = raw_segments(store, obj.job_id, INTERLEAVED_STEP, 3)
    step["segments"] = {str(index): items.get(index, {"state": "pending"}) for index in range(3)}
    queued = _receive(stack)
    record = store.get_job(obj.job_id).steps[INTERLEAVED_STEP]
    left = unclaimed(record, segment_records(3, store.get_segments(obj.job_id, INTERLEAVED_STEP, 3)))
    pending = [index for index in range(3) if step["segments"][str(index)]["state"] == "pending"]
    assert sorted(parse_body(m["Body"], INTERLEAVED_STEP).items[0].segment for m in queued) == pending, (
        f"job never ends: step {step['state']}, segments {pending} pending, each recording a message id that was deleted "
        f"before the retry ({[step['segments'][str(i)].get('message_id') for i in pending]}); unclaimed() = {left}, "
        f"so resume sent nothing; queue holds {len(queued)} message(s)"
    )


def test_segments_sent_by_a_duplicate_step_message_carry_the_job_when_the_splitting_message_is_dead_lettered(stack: StepStack) -> None:
    stack.put(INTERLEAVED_KEY, b"long video")
    obj = stack.object_ref(INTERLEAVED_KEY)
    store = JobStore(stack.table)
    assert store.create_job(obj, [INTERLEAVED_STEP], time.time())
    body = WorkMessage.for_job(obj, INTERLEAVED_STEP).to_body()
    # S's worker claimed the step, recorded the plan and was killed before it sent a segment message; so on every receive.
    store.splits.record_split(
        store.claims.claim(obj.job_id, INTERLEAVED_STEP, "w-splitter", stack.send(body), time.time(), 300),
        SegmentPlan(VideoTimeline(30, 30 * 180, 30), 60),
        time.time(),
    )
    for _ in range(stack.max_receive_count):
        assert stack.aws["sqs"].receive_message(QueueUrl=stack.queue_url, VisibilityTimeout=0).get("Messages")
    # A duplicate step message D (a replayed router batch, a twice-delivered S3 notification) reaches a live worker:
    # Refusal.SPLIT -> Splitter.resume sends the three segment messages, and records them.
    stack.send(body)
    [duplicate] = _receive(stack)
    live = _worker(stack, "w-live")
    live.handle(duplicate, live.hold(duplicate, time.time()))
    assert stack.counts() == (3, 0)
    with deadletters.configured(stack, INTERLEAVED_STEP):
        assert deadletters.pump(stack) == 1  # S's dead letter
    job = raw_job(store, obj.job_id)
    assert job["status"] == "running", (job["steps"][INTERLEAVED_STEP].get("error"), unclaimed(job["steps"][INTERLEAVED_STEP]))
