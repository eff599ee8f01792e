"""The dead-letter consumer against moto: a message SQS dead-lettered ends its job, whatever its shape."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from local_runtime.events import sqs_event as lambda_batch
from pipeline_core import aws
from pipeline_core.bodies import parse_body
from pipeline_core.jobs import ObjectRef, WorkMessage
from pipeline_core.jobstore import JobStore
from pipeline_core.segment_plan import SegmentPlan, VideoTimeline
from stream_router import app as router_app
from stream_router import deadletter
from tests.support.aws import s3_notification
from tests.support.interleave import AfterFirstCount
from tests.support.items import raw_job, raw_segments
from tests.support.lambdas import LambdaContext, sqs_event
from tests.support.pipeline import MAX_RECEIVE_COUNT, PipelineStack

pytestmark = pytest.mark.integration

EVENTS = Path(__file__).parent / "fixtures" / "events"
REASON = f"moved to the dead-letter queue after {MAX_RECEIVE_COUNT} receives"


@pytest.fixture
def pipeline(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineStack]:
    stack = PipelineStack.create(moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("PIPELINE_CONFIG", stack.env["PIPELINE_CONFIG"])
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "GpuPipeline")
    aws.reset()
    yield stack


def store(stack: PipelineStack) -> JobStore:
    return JobStore(boto3.resource("dynamodb").Table(stack.config["jobs_table"]))


def new_job(stack: PipelineStack, key: str) -> dict[str, Any]:
    """Upload ``key``, let intake and the router make its job; return the step message the router sent."""
    s3 = stack.client("s3")
    s3.put_object(Bucket=stack.bucket, Key=key, Body=b"\xff\xd8\xff")
    router_app.intake_handler(sqs_event(s3_notification(s3, stack.bucket, key)), LambdaContext())
    router_app.stream_handler(stack.new_stream_event(), LambdaContext())
    sqs = stack.client("sqs")
    messages = sqs.receive_message(QueueUrl=stack.queue_url("people"), MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
    [message] = [m for m in messages if json.loads(m["Body"])["key"] == key]
    return message


def receive_until_dead_lettered(stack: PipelineStack, step: str) -> list[dict[str, Any]]:
    """Receive without deleting (a worker killed each time) until SQS moves the message to the DLQ; return the DLQ's messages."""
    sqs = stack.client("sqs")
    for _ in range(MAX_RECEIVE_COUNT + 1):
        if not sqs.receive_message(QueueUrl=stack.queue_url(step), MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages"):
            break
    return sqs.receive_message(
        QueueUrl=stack.step_config(step)["dlq_url"], MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"], VisibilityTimeout=30
    ).get("Messages", [])


def consume(stack: PipelineStack, step: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    return deadletter.handler(lambda_batch(messages, stack.step_config(step)["dlq_arn"]), LambdaContext("deadletter"))


def emf(capsys: pytest.CaptureFixture[str], name: str) -> float:
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    return sum(sum(doc[name]) if isinstance(doc[name], list) else doc[name] for doc in docs if name in doc)


def test_a_message_dead_lettered_while_its_step_runs_fails_the_job_and_is_announced(pipeline: PipelineStack, monkeypatch, capsys) -> None:
    sns, sqs = pipeline.client("sns"), pipeline.client("sqs")
    topic = sns.create_topic(Name=f"jobs-{pipeline.bucket}")["TopicArn"]
    inbox = sqs.create_queue(QueueName=f"inbox-{pipeline.bucket}")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn, Attributes={"RawMessageDelivery": "true"})
    monkeypatch.setenv("PIPELINE_CONFIG", json.dumps({**pipeline.config, "notify_topic_arn": topic}))
    aws.reset()
    message = new_job(pipeline, "uploads/killed.jpg")
    job_id = json.loads(message["Body"])["job_id"]
    # A worker claimed it and was SIGKILLed: the step stays running under an expired lease.
    store(pipeline).claims.claim(job_id, "people", "w1", message["MessageId"], now=1.0, lease_seconds=10)
    dead = receive_until_dead_lettered(pipeline, "people")
    assert [m["MessageId"] for m in dead] == [message["MessageId"]]
    assert consume(pipeline, "people", dead) == {"batchItemFailures": []}
    job = raw_job(store(pipeline), job_id)
    assert (job["status"], job["steps"]["people"]["state"], job["steps"]["people"]["error"]) == ("failed", "failed", REASON)
    assert emf(capsys, "StepsDeadLettered") == 1
    router_app.stream_handler(pipeline.new_stream_event(), LambdaContext())
    assert pipeline.drain("faces") == []
    [note] = [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]]
    assert (note["job_id"], note["status"]) == (job_id, "failed")
    assert REASON in note["reason"]


def test_a_message_dead_lettered_before_any_claim_fails_its_pending_step(pipeline: PipelineStack) -> None:
    message = new_job(pipeline, "uploads/never claimed.jpg")
    job_id = json.loads(message["Body"])["job_id"]
    dead = receive_until_dead_lettered(pipeline, "people")
    assert consume(pipeline, "people", dead) == {"batchItemFailures": []}
    job = raw_job(store(pipeline), job_id)
    assert (job["status"], job["steps"]["people"]["error"], job["steps"]["faces"]["state"]) == ("failed", REASON, "waiting")


def test_a_finished_step_or_one_held_by_another_message_is_left_alone(pipeline: PipelineStack, capsys) -> None:
    finished = new_job(pipeline, "uploads/done.jpg")
    held = new_job(pipeline, "uploads/held.jpg")
    jobs = store(pipeline)
    done_id, held_id = json.loads(finished["Body"])["job_id"], json.loads(held["Body"])["job_id"]
    jobs.claims.mark_done(jobs.claims.claim(done_id, "people", "w1", finished["MessageId"], 1.0, 1e12), 2.0, "s3://r", {})
    jobs.claims.claim(held_id, "people", "w2", "a-duplicate-message", 1.0, 1e12)
    capsys.readouterr()
    dead = receive_until_dead_lettered(pipeline, "people")
    assert len(dead) == 2
    assert consume(pipeline, "people", dead) == {"batchItemFailures": []}
    assert raw_job(store(pipeline), done_id)["steps"]["people"]["state"] == "done"
    assert raw_job(store(pipeline), held_id)["steps"]["people"]["state"] == "running"
    assert raw_job(store(pipeline), held_id)["status"] == "running"
    assert emf(capsys, "DeadLettersDropped") == 2


def test_a_dead_lettered_s3_notification_without_a_job_creates_and_fails_it(pipeline: PipelineStack) -> None:
    s3 = pipeline.client("s3")
    s3.put_object(Bucket=pipeline.bucket, Key="uploads/raw.png", Body=b"\x89PNG")
    notification = s3_notification(s3, pipeline.bucket, "uploads/raw.png")
    dlq_arn = pipeline.step_config("people")["dlq_arn"]
    assert deadletter.handler(sqs_event(notification, queue_arn=dlq_arn), LambdaContext()) == {"batchItemFailures": []}
    etag = notification["Records"][0]["s3"]["object"]["eTag"]
    job = raw_job(store(pipeline), ObjectRef(pipeline.bucket, "uploads/raw.png", etag).job_id)
    assert (job["step_names"], job["status"], job["steps"]["people"]["error"]) == (["people"], "failed", REASON)


def test_unreadable_messages_are_logged_counted_and_deleted_and_an_unknown_queue_is_kept(
    pipeline: PipelineStack, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    dlq_arn = pipeline.step_config("people")["dlq_arn"]
    other_step = {"kind": "gpu-pipeline.step", "v": 1, "job_id": "j", "step": "faces", "bucket": "b", "key": "k", "version": "v"}
    no_job_id = {**other_step, "job_id": "", "step": "people"}
    no_such_job = {**other_step, "job_id": "0" * 32, "step": "people"}
    response = deadletter.handler(
        sqs_event("not json", [1, 2], other_step, no_job_id, no_such_job, {"Event": "s3:TestEvent"}, queue_arn=dlq_arn), LambdaContext()
    )
    assert response == {"batchItemFailures": []}
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    # A job_id that is not the id of the object the message names is as unreadable as a missing one.
    assert errors == ["unreadable dead-lettered message deleted"] * 5
    assert emf(capsys, "DeadLettersUnreadable") == 5
    assert raw_job(store(pipeline), "0" * 32) is None
    # A queue the definition does not name: the whole batch fails and stays on its queue, to be seen.
    with pytest.raises(BatchProcessingError, match="All records failed"):
        deadletter.handler(sqs_event(no_such_job, queue_arn=dlq_arn + "-elsewhere"), LambdaContext())


def test_the_lambda_event_fixture_fails_the_job_it_names(pipeline: PipelineStack, monkeypatch: pytest.MonkeyPatch) -> None:
    message = new_job(pipeline, "uploads/fixture.jpg")
    job_id = json.loads(message["Body"])["job_id"]
    event = json.loads((EVENTS / "sqs_step_dlq_message.json").read_text())
    [record] = event["Records"]
    record["eventSourceARN"] = pipeline.step_config("people")["dlq_arn"]
    # The body names the object its job_id is the id of: the router's real message for this job.
    assert json.loads(record["body"])["kind"] == json.loads(message["Body"])["kind"]
    record["body"] = message["Body"]
    config = {**pipeline.config, "steps": [{**s, "max_receive_count": 0} for s in pipeline.config["steps"]]}
    monkeypatch.setenv("PIPELINE_CONFIG", json.dumps(config))
    aws.reset()
    assert deadletter.handler(event, LambdaContext()) == {"batchItemFailures": []}
    # Without maxReceiveCount in the definition, the record's own receive count is reported.
    assert raw_job(store(pipeline), job_id)["steps"]["people"]["error"] == "moved to the dead-letter queue after 6 receives"


def test_a_dead_lettered_segment_message_fails_its_segment_step_and_job_naming_the_segment(pipeline: PipelineStack, capsys) -> None:
    from pipeline_core.jobs import WorkMessage
    from pipeline_core.segment_plan import SegmentPlan, VideoTimeline

    message = new_job(pipeline, "uploads/long.mp4")
    body = WorkMessage.from_dict(json.loads(message["Body"]))
    sqs, jobs = pipeline.client("sqs"), store(pipeline)
    # A worker claimed the whole step, split the 8-minute video into eight 60-s segments and settled the step's message.
    claim = jobs.claims.claim(body.job_id, "people", "w0", message["MessageId"], 1.0, 60)
    jobs.splits.record_split(claim, SegmentPlan(VideoTimeline(30, 30 * 480, 30), 60), 2.0)
    sqs.delete_message(QueueUrl=pipeline.queue_url("people"), ReceiptHandle=message["ReceiptHandle"])
    jobs.splits.mark_segment_done(jobs.claims.claim(body.job_id, "people", "w1", "m-seg-0", 3.0, 60, segment=0), 4.0, "s3://r/0", {})
    for index in (0, 2):
        sqs.send_message(QueueUrl=pipeline.queue_url("people"), MessageBody=body.for_segment(index).to_body())
    # Segment 2's message is received and its holder dies, each time, until SQS dead-letters it; so is a duplicate of done segment 0's.
    [seg2] = [
        m
        for m in sqs.receive_message(QueueUrl=pipeline.queue_url("people"), MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
        if '"segment": 2' in m["Body"]
    ]
    jobs.claims.claim(body.job_id, "people", "w2", seg2["MessageId"], 5.0, 1e-3, segment=2)
    dead = receive_until_dead_lettered(pipeline, "people")
    assert sorted(json.loads(m["Body"])["segment"] for m in dead) == [0, 2]
    capsys.readouterr()
    assert consume(pipeline, "people", dead) == {"batchItemFailures": []}

    job = raw_job(jobs, body.job_id)
    step = job["steps"]["people"]
    assert job["status"] == "failed" and step["state"] == "failed"
    assert step["error"] == f"segment 3/8 [120 s, 180 s): {REASON}"
    segments = raw_segments(jobs, body.job_id, "people", 8)
    assert (segments[2]["state"], segments[2]["error"]) == ("failed", REASON)
    assert segments[0]["state"] == "done" and step["segments_done"] == 1  # the done segment is left alone
    assert [i for i in range(3, 8) if i in segments] == []  # never sent nor claimed: no item, pending
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert [sum(sum(doc.get(name, [])) for doc in docs) for name in ("StepsDeadLettered", "DeadLettersDropped")] == [1, 1]
    # A second delivery of the same dead letter changes nothing.
    assert not jobs.dead_letters.fail_segment(
        jobs.get_job(body.job_id), "people", SegmentPlan(VideoTimeline(30, 30 * 480, 30), 60).segments[2], "x", 9.0, seg2["MessageId"]
    )


def split_and_dead_letter_the_step_message(pipeline: PipelineStack, key: str, claimed: tuple[int, ...]) -> tuple[str, JobStore]:
    """A worker split a 3-minute video into three segments and died before deleting the step's message, each time,
    until SQS dead-lettered it. Segments ``claimed`` were taken by other workers (so their messages exist); the rest never."""
    message = new_job(pipeline, key)
    body = WorkMessage.from_dict(json.loads(message["Body"]))
    jobs = store(pipeline)
    claim = jobs.claims.claim(body.job_id, "people", "w0", message["MessageId"], 1.0, 60)
    jobs.splits.record_split(claim, SegmentPlan(VideoTimeline(30, 30 * 180, 30), 60), 2.0)
    for index in claimed:
        jobs.claims.claim(body.job_id, "people", f"w-seg-{index}", f"m-seg-{index}", 3.0, 600, segment=index)
    dead = receive_until_dead_lettered(pipeline, "people")
    assert [json.loads(m["Body"]).get("segment") for m in dead] == [None]
    assert consume(pipeline, "people", dead) == {"batchItemFailures": []}
    return body.job_id, jobs


def test_a_dead_lettered_step_message_of_a_split_step_whose_segments_all_have_messages_is_dropped(pipeline: PipelineStack, capsys) -> None:
    job_id, jobs = split_and_dead_letter_the_step_message(pipeline, "uploads/split-progressing.mp4", claimed=(0, 1, 2))
    job = raw_job(jobs, job_id)
    assert job["status"] == "running" and job["steps"]["people"]["state"] == "running"  # the segments go on, then merge
    assert [s["state"] for s in raw_segments(jobs, job_id, "people", 3).values()] == ["running"] * 3
    assert emf(capsys, "DeadLettersDropped") == 1


def test_a_dead_lettered_step_message_of_a_split_step_with_segments_never_sent_sends_them_and_the_job_goes_on(
    pipeline: PipelineStack,
) -> None:
    """The splitter killed after SQS accepted the segment messages but before their ids were recorded, on
    the step message's last receive, made the consumer fail a job whose segments had messages. Segments 1 and 2 may
    never have been sent and the step's message was what would send them: the consumer sends them, and records them."""
    job_id, jobs = split_and_dead_letter_the_step_message(pipeline, "uploads/split-unsent.mp4", claimed=(0,))
    job = raw_job(jobs, job_id)
    assert (job["status"], job["steps"]["people"]["state"]) == ("running", "running"), job["steps"]["people"].get("error")
    queued = pipeline.client("sqs").receive_message(QueueUrl=pipeline.queue_url("people"), MaxNumberOfMessages=10)["Messages"]
    recorded = {i: s.get("message_id") for i, s in raw_segments(jobs, job_id, "people", 3).items() if i != 0}
    assert recorded == {json.loads(m["Body"])["segment"]: m["MessageId"] for m in queued} and sorted(recorded) == [1, 2]


def every_segment_done(pipeline: PipelineStack, key: str, settle_step_message: bool = False) -> tuple[str, JobStore]:
    """A 3-minute video split by the step's message, segments 0 to 2 done by their own messages, m-seg-2's
    completing the set: it merges next. The step's message stays queued (its worker died before deleting it),
    unless ``settle_step_message`` (the split settled it: deleted)."""
    message = new_job(pipeline, key)
    body = WorkMessage.from_dict(json.loads(message["Body"]))
    jobs = store(pipeline)
    plan = SegmentPlan(VideoTimeline(30, 30 * 180, 30), 60)
    jobs.splits.record_split(jobs.claims.claim(body.job_id, "people", "w0", message["MessageId"], 1.0, 60), plan, 2.0)
    if settle_step_message:
        pipeline.client("sqs").delete_message(QueueUrl=pipeline.queue_url("people"), ReceiptHandle=message["ReceiptHandle"])
    for index in range(plan.count):
        done = jobs.splits.mark_segment_done(
            jobs.claims.claim(body.job_id, "people", f"w{index}", f"m-seg-{index}", 3.0, 600, segment=index), 4.0, f"s3://r/{index}", {}
        )
    assert done == (3, 3)
    return body.job_id, jobs


def retried_after_a_failed_merge(pipeline: PipelineStack, key: str) -> tuple[str, JobStore]:
    """Every segment done, the merge failed for good, and `gpupipe retry` put the step back: the router sent the
    step's message again, the only one left that can merge."""
    job_id, jobs = every_segment_done(pipeline, key, settle_step_message=True)
    jobs.claims.mark_failed(
        jobs.claims.claim_merge(job_id, "people", "w-merge", "m-seg-2", 5.0, 600), 6.0, "merge: PermanentError: out of disk"
    )
    router_app.stream_handler(pipeline.new_stream_event(), LambdaContext())
    assert jobs.retries.retry_step(job_id, "people", 7.0)
    router_app.stream_handler(pipeline.new_stream_event(), LambdaContext())  # failed -> pending: the step's message again
    return job_id, jobs


def test_a_retried_split_steps_message_dead_lettered_before_it_merged_fails_the_job(pipeline: PipelineStack) -> None:
    job_id, jobs = retried_after_a_failed_merge(pipeline, "uploads/retried-merge.mp4")
    dead = receive_until_dead_lettered(pipeline, "people")
    assert [json.loads(m["Body"]).get("segment") for m in dead] == [None]
    assert consume(pipeline, "people", dead) == {"batchItemFailures": []}
    # Every segment is done: no segment message is left to merge, so the step must fail rather than wait forever.
    assert pipeline.drain("people") == []
    job = raw_job(jobs, job_id)
    assert (job["status"], job["steps"]["people"]["state"], job["steps"]["people"]["error"]) == ("failed", "failed", REASON)


def test_a_retried_split_steps_message_dead_lettered_after_its_merge_was_released_fails_the_job(pipeline: PipelineStack) -> None:
    job_id, jobs = retried_after_a_failed_merge(pipeline, "uploads/retried-merge-released.mp4")
    [message] = pipeline.client("sqs").receive_message(QueueUrl=pipeline.queue_url("people"), VisibilityTimeout=0)["Messages"]
    # Its worker resumed the split step and claimed the merge, which hit a transient error: released (no holder).
    assert jobs.splits.resume_split(job_id, "people", 8.0, message["MessageId"])
    jobs.claims.release_after_error(jobs.claims.claim_merge(job_id, "people", "w-m1", message["MessageId"], 9.0, 600), 10.0, "Throttled")
    dead = receive_until_dead_lettered(pipeline, "people")
    assert [m["MessageId"] for m in dead] == [message["MessageId"]]
    assert consume(pipeline, "people", dead) == {"batchItemFailures": []}
    assert pipeline.drain("people") == []
    job = raw_job(jobs, job_id)
    assert (job["status"], job["steps"]["people"]["state"]) == ("failed", "failed")


def test_a_dead_lettered_step_message_of_a_split_step_whose_segment_messages_wait_unclaimed_is_dropped(pipeline: PipelineStack) -> None:
    """A backlog: the splitter sent every segment message, no worker has claimed one yet, and the step's message
    (its worker killed before deleting it, each time) is dead-lettered. The segments' messages carry the job."""
    from worker.splitter import Splitter

    message = new_job(pipeline, "uploads/queued-segments.mp4")
    [item] = parse_body(message["Body"], "people").items
    jobs = store(pipeline)
    plan = SegmentPlan(VideoTimeline(30, 30 * 180, 30), 60)
    jobs.splits.record_split(jobs.claims.claim(item.job_id, "people", "w0", message["MessageId"], 1.0, 60), plan, 2.0)
    dead = receive_until_dead_lettered(pipeline, "people")
    # What the splitter sends after record_split (here after the step's message left the queue, so that only it is dead-lettered).
    Splitter(pipeline.client("sqs"), None, jobs, pipeline.queue_url("people"), 60, None).send(item, [0, 1, 2], None)  # type: ignore[arg-type]
    assert [json.loads(m["Body"]).get("segment") for m in dead] == [None]
    assert consume(pipeline, "people", dead) == {"batchItemFailures": []}
    job = raw_job(jobs, item.job_id)
    assert (job["status"], job["steps"]["people"]["state"]) == ("running", "running"), job["steps"]["people"].get("error")
    # Each segment's recorded message is the one on the queue, the message that will claim it.
    queued = pipeline.client("sqs").receive_message(QueueUrl=pipeline.queue_url("people"), MaxNumberOfMessages=10)["Messages"]
    recorded = {index: segment.get("message_id") for index, segment in raw_segments(jobs, item.job_id, "people", 3).items()}
    assert recorded == {json.loads(m["Body"])["segment"]: m["MessageId"] for m in queued} and len(recorded) == 3


def test_a_retried_split_steps_message_dead_lettered_after_it_resumed_the_step_but_before_it_merged_fails_the_job(
    pipeline: PipelineStack,
) -> None:
    """The message's first receive resumed the step (running, no holder); every receive then died before claim_merge."""
    job_id, jobs = retried_after_a_failed_merge(pipeline, "uploads/retried-resumed.mp4")
    [message] = pipeline.client("sqs").receive_message(QueueUrl=pipeline.queue_url("people"), VisibilityTimeout=0)["Messages"]
    assert jobs.splits.resume_split(job_id, "people", 8.0, message["MessageId"])
    dead = receive_until_dead_lettered(pipeline, "people")
    assert [m["MessageId"] for m in dead] == [message["MessageId"]]
    assert consume(pipeline, "people", dead) == {"batchItemFailures": []}
    assert pipeline.drain("people") == []  # no message is left that could merge
    job = raw_job(jobs, job_id)
    assert (job["status"], job["steps"]["people"]["state"]) == ("failed", "failed"), job["steps"]["people"]


def test_a_dead_lettered_step_message_leaves_a_split_step_whose_last_segment_message_is_to_merge(pipeline: PipelineStack) -> None:
    """m-seg-2's worker was killed between mark_segment_done and claim_merge: its message comes back and merges."""
    job_id, jobs = every_segment_done(pipeline, "uploads/about-to-merge.mp4")
    dead = receive_until_dead_lettered(pipeline, "people")
    assert [json.loads(m["Body"]).get("segment") for m in dead] == [None]
    assert consume(pipeline, "people", dead) == {"batchItemFailures": []}
    job = raw_job(jobs, job_id)
    assert (job["status"], job["steps"]["people"]["state"]) == ("running", "running"), job["steps"]["people"].get("error")
    assert jobs.claims.claim_merge(job_id, "people", "w-merge", "m-seg-2", 5.0, 600).merging


def test_a_dead_lettered_step_message_leaves_a_merge_whose_killed_holder_its_segment_message_takes_over(pipeline: PipelineStack) -> None:
    job_id, jobs = every_segment_done(pipeline, "uploads/merge-killed.mp4")
    jobs.claims.claim_merge(job_id, "people", "w-merge", "m-seg-2", 5.0, 10)  # its worker killed: the lease ran out long ago
    dead = receive_until_dead_lettered(pipeline, "people")
    assert consume(pipeline, "people", dead) == {"batchItemFailures": []}
    job = raw_job(jobs, job_id)
    assert (job["status"], job["steps"]["people"]["state"]) == ("running", "running"), job["steps"]["people"].get("error")
    assert jobs.claims.claim_merge(job_id, "people", "w-merge-2", "m-seg-2", 100.0, 600).failures == 1  # m-seg-2 takes it over


def test_the_message_that_completed_the_set_dead_lettered_before_it_merged_fails_the_job_naming_the_merge(pipeline: PipelineStack) -> None:
    job_id, jobs = every_segment_done(pipeline, "uploads/merge-never-claimed.mp4")
    sqs = pipeline.client("sqs")
    [step_message] = sqs.receive_message(QueueUrl=pipeline.queue_url("people"))["Messages"]
    sqs.delete_message(QueueUrl=pipeline.queue_url("people"), ReceiptHandle=step_message["ReceiptHandle"])  # settled by the split
    # m-seg-2 (whose segment completed the set) died before claim_merge on every receive: SQS dead-lettered it.
    segment_message = {
        "MessageId": "m-seg-2",
        "ReceiptHandle": "r",
        "Body": WorkMessage.from_dict(json.loads(step_message["Body"])).for_segment(2).to_body(),
        "Attributes": {"ApproximateReceiveCount": str(MAX_RECEIVE_COUNT)},
    }
    assert consume(pipeline, "people", [segment_message]) == {"batchItemFailures": []}
    job = raw_job(jobs, job_id)
    assert (job["status"], job["steps"]["people"]["state"]) == ("failed", "failed")
    assert job["steps"]["people"]["error"].startswith("merge: "), job["steps"]["people"]["error"]


# --- two segments finishing at the same moment: the one that completes the set still records its message ------------


def _two_segments_finish_together(pipeline: PipelineStack, key: str, delete_step_message: bool) -> tuple[str, JobStore, dict[str, Any]]:
    """A 2-minute video split by its step message S into two segments, each sent and claimed by its own message;
    both workers finish at the same moment. Returns (job id, store, segment 0's message: the one that completed the set)."""
    sqs = pipeline.client("sqs")
    step_message = new_job(pipeline, key)
    body = WorkMessage.from_dict(json.loads(step_message["Body"]))
    jobs = store(pipeline)
    plan = SegmentPlan(VideoTimeline(30, 30 * 120, 30), 60)
    assert plan.count == 2
    jobs.splits.record_split(jobs.claims.claim(body.job_id, "people", "w-split", step_message["MessageId"], 1.0, 60), plan, 2.0)
    if delete_step_message:
        sqs.delete_message(QueueUrl=pipeline.queue_url("people"), ReceiptHandle=step_message["ReceiptHandle"])  # settled by the split
    sent = {
        index: sqs.send_message(QueueUrl=pipeline.queue_url("people"), MessageBody=body.for_segment(index).to_body())["MessageId"]
        for index in range(2)
    }
    for index, message_id in sent.items():
        assert jobs.splits.record_segment_message(body.job_id, "people", index, message_id, retried_at=None)
    received = {}
    for message in sqs.receive_message(QueueUrl=pipeline.queue_url("people"), MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]:
        segment = json.loads(message["Body"]).get("segment")
        if segment is not None:
            received[segment] = message
    assert sorted(received) == [0, 1]
    claims = {i: jobs.claims.claim(body.job_id, "people", f"w{i}", received[i]["MessageId"], 3.0, 600, segment=i) for i in range(2)}

    results: dict[int, tuple[int, int]] = {}

    def other_finishes() -> None:
        results[1] = jobs.splits.mark_segment_done(claims[1], 4.0, "s3://r/1", {})

    # Segment 1's count lands while segment 0's transaction is answered: 0 reads the set complete; 1 read it before
    # 0's count (the one interleaving where only one worker reads it complete; with both reading it, both try the merge).
    other_finishes()
    results[0] = JobStore(AfterFirstCount(jobs.table.resource, lambda: None)).splits.mark_segment_done(claims[0], 4.0, "s3://r/0", {})
    [completer] = [i for i, result in results.items() if result == (2, 2)]  # it merges
    assert results[1 - completer] == (1, 2)
    # The other worker's segment is done and not the last: it deletes its message.
    sqs.delete_message(QueueUrl=pipeline.queue_url("people"), ReceiptHandle=received[1 - completer]["ReceiptHandle"])
    return body.job_id, jobs, received[completer]


def test_concurrent_completions_the_completing_message_dead_lettered_before_it_merged_still_ends_the_job(
    pipeline: PipelineStack,
) -> None:
    """Segment 0's worker completed the set and died (or claim_merge was throttled) before claim_merge, on the last
    receive SQS allowed: its message is dead-lettered. It was the only message that could merge, so the step must
    fail ("merge: ..."), as it does when the two segments finish one after the other
    (test_the_message_that_completed_the_set_dead_lettered_before_it_merged_fails_the_job_naming_the_merge)."""
    job_id, jobs, completing = _two_segments_finish_together(pipeline, "uploads/together-dlq.mp4", delete_step_message=True)
    step = raw_job(jobs, job_id)["steps"]["people"]
    dead = receive_until_dead_lettered(pipeline, "people")
    assert [m["MessageId"] for m in dead] == [completing["MessageId"]]
    assert consume(pipeline, "people", dead) == {"batchItemFailures": []}
    assert pipeline.drain("people") == []  # no message is left that could merge
    job = raw_job(jobs, job_id)
    assert job["status"] == "failed", (
        f"job never ends: status {job['status']}, step {job['steps']['people']['state']}, segments_done "
        f"{job['steps']['people']['segments_done']}/{job['steps']['people']['segment_count']}, no merge holder, no message queued; "
        f"the step records {step.get('message_id')!r} as the message that merges, not the completing {completing['MessageId']!r}"
    )
    assert job["steps"]["people"]["error"].startswith("merge: "), job["steps"]["people"]["error"]


def test_concurrent_completions_the_step_message_dead_lettered_leaves_the_job_to_the_completing_message(
    pipeline: PipelineStack,
) -> None:
    """The splitter died before deleting S (so on every receive, until SQS dead-lettered it); the segments finished
    together, and segment 0's message is about to merge. S's dead letter must be dropped, as it is when the two
    finish one after the other (test_a_dead_lettered_step_message_leaves_a_split_step_whose_last_segment_message_is_to_merge)."""
    job_id, jobs, completing = _two_segments_finish_together(pipeline, "uploads/together-step-dlq.mp4", delete_step_message=False)
    # Segment 0's worker is alive and holds its message (the keepalive extends it) while it goes on to merge.
    pipeline.client("sqs").change_message_visibility(
        QueueUrl=pipeline.queue_url("people"), ReceiptHandle=completing["ReceiptHandle"], VisibilityTimeout=600
    )
    dead = receive_until_dead_lettered(pipeline, "people")
    assert [json.loads(m["Body"]).get("segment") for m in dead] == [None]
    assert consume(pipeline, "people", dead) == {"batchItemFailures": []}
    job = raw_job(jobs, job_id)
    assert (job["status"], job["steps"]["people"]["state"]) == ("running", "running"), (
        f"a job whose merge was about to run was failed: {job['steps']['people'].get('error')}"
    )
    assert jobs.claims.claim_merge(job_id, "people", "w0", completing["MessageId"], 5.0, 600).merging


def test_a_merge_never_claimed_whose_message_segment_takeovers_spent_is_redriven_not_failed(pipeline: PipelineStack) -> None:
    """A segment's message spends its receives on takeovers of that segment (counted on the
    segment's item), its last receive counts the set complete and dies before claim_merge. The split recorded the
    worker's budget, so the dead-lettered message's merge is carried on by a fresh step message, one failure counted."""
    message = new_job(pipeline, "uploads/review-takeovers.mp4")
    body = WorkMessage.from_dict(json.loads(message["Body"]))
    jobs = store(pipeline)
    plan = SegmentPlan(VideoTimeline(30, 30 * 180, 30), 60)
    jobs.splits.record_split(jobs.claims.claim(body.job_id, "people", "w0", message["MessageId"], 1.0, 60), plan, 2.0, max_attempts=5)
    pipeline.client("sqs").delete_message(QueueUrl=pipeline.queue_url("people"), ReceiptHandle=message["ReceiptHandle"])
    for index in range(2):
        jobs.splits.mark_segment_done(
            jobs.claims.claim(body.job_id, "people", f"w{index}", f"m-seg-{index}", 3.0, 600, segment=index), 4.0, f"s3://r/{index}", {}
        )
    now = 10.0
    for attempt in range(MAX_RECEIVE_COUNT):  # each receive but the last killed mid-segment and taken over
        claim = jobs.claims.claim(body.job_id, "people", f"w2-{attempt}", "m-seg-2", now, 5, segment=2)
        now += 10
    assert jobs.splits.mark_segment_done(claim, now, "s3://r/2", {}) == (3, 3)  # ... the last died before claim_merge
    dead = {
        "MessageId": "m-seg-2",
        "ReceiptHandle": "r",
        "Body": body.for_segment(2).to_body(),
        "Attributes": {"ApproximateReceiveCount": str(MAX_RECEIVE_COUNT)},
    }
    assert consume(pipeline, "people", [dead]) == {"batchItemFailures": []}
    job = raw_job(jobs, body.job_id)
    assert (job["status"], job["steps"]["people"]["state"]) == ("running", "running"), job["steps"]["people"]
    assert job["steps"]["people"]["failures"] == 1
    [fresh] = pipeline.drain("people")
    assert WorkMessage.from_dict(fresh).segment is None  # the step's own message: it merges
