"""Both Lambda handlers against moto, with events shaped as Lambda delivers them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from pipeline_core import aws
from pipeline_core.jobs import ObjectRef
from pipeline_core.jobstore import JobStore
from scaler import app as scaler_app
from stream_router import app as router_app
from tests.support.aws import s3_notification
from tests.support.lambdas import LambdaContext, sqs_event
from tests.support.pipeline import PipelineStack

EVENTS = Path(__file__).parent / "fixtures" / "events"


def load_event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


@pytest.fixture
def pipeline(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineStack]:
    stack = PipelineStack.create(moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("PIPELINE_CONFIG", stack.env["PIPELINE_CONFIG"])
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "GpuPipeline")
    aws.reset()
    yield stack


def s3_event(stack: PipelineStack, *keys: str) -> dict:
    """An S3 notification for objects uploaded now."""
    s3 = stack.client("s3")
    for key in keys:
        s3.put_object(Bucket=stack.bucket, Key=key, Body=b"\xff\xd8\xff" + key.encode())
    return s3_notification(s3, stack.bucket, *keys)


def jobs(stack: PipelineStack) -> JobStore:
    return JobStore(boto3.resource("dynamodb").Table(stack.config["jobs_table"]))


def route_new_records(stack: PipelineStack) -> dict:
    return router_app.stream_handler(stack.new_stream_event(), LambdaContext())


# --- intake ---------------------------------------------------------------------------


def job_keys(stack: PipelineStack) -> list[str]:
    return sorted(item["key"] for item in boto3.resource("dynamodb").Table(stack.config["jobs_table"]).scan()["Items"])


def test_intake_ignores_the_s3_test_event(pipeline: PipelineStack) -> None:
    response = router_app.intake_handler(sqs_event(load_event("s3_test_event.json")), LambdaContext())
    assert response == {"batchItemFailures": []}
    assert job_keys(pipeline) == []


def test_intake_creates_one_job_per_object_and_none_for_a_duplicate_event(pipeline: PipelineStack) -> None:
    event = s3_event(pipeline, "uploads/holiday photos/a+b.jpg", "uploads/日本/clip.mp4", "uploads/notes.txt")
    assert router_app.intake_handler(sqs_event(event), LambdaContext()) == {"batchItemFailures": []}
    assert router_app.intake_handler(sqs_event(event), LambdaContext()) == {"batchItemFailures": []}
    assert job_keys(pipeline) == ["uploads/holiday photos/a+b.jpg", "uploads/日本/clip.mp4"]
    etag = event["Records"][0]["s3"]["object"]["eTag"]
    job = jobs(pipeline).get_job(ObjectRef(pipeline.bucket, "uploads/holiday photos/a+b.jpg", etag.strip('"')).job_id)
    assert job["step_names"] == ["people", "faces"]
    assert {name: step["state"] for name, step in job["steps"].items()} == {"people": "pending", "faces": "pending"}
    assert job["expires_at"] > job["created_at"]


def test_a_poison_intake_message_fails_alone(pipeline: PipelineStack) -> None:
    good = s3_event(pipeline, "uploads/good.png")
    response = router_app.intake_handler(sqs_event("not json at all", good), LambdaContext())
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-0"}]}
    assert job_keys(pipeline) == ["uploads/good.png"]


# --- routing on the stream --------------------------------------------------------------


def test_a_job_walks_its_steps_and_succeeds(pipeline: PipelineStack) -> None:
    router_app.intake_handler(sqs_event(s3_event(pipeline, "uploads/a.jpg")), LambdaContext())
    assert route_new_records(pipeline) == {"batchItemFailures": []}
    [message] = pipeline.drain("people")
    assert (message["step"], message["key"]) == ("people", "uploads/a.jpg")
    store = jobs(pipeline)
    claim = store.claim(message["job_id"], "people", "w1", "m1", now=1.0, lease_seconds=1e12)
    store.extend_lease(claim, until=2e12)  # a heartbeat: must send nothing
    store.mark_done(claim, now=2.0, result_file="s3://r/people", timings={})
    assert route_new_records(pipeline) == {"batchItemFailures": []}
    assert pipeline.drain("people") == []
    [message] = pipeline.drain("faces")
    assert message["step"] == "faces"
    store.mark_done(store.claim(message["job_id"], "faces", "w1", "m2", 3.0, 1e12), 4.0, "s3://r/faces", {})
    route_new_records(pipeline)
    assert pipeline.drain("people") == pipeline.drain("faces") == []
    assert store.get_job(message["job_id"])["status"] == "succeeded"


def test_a_failed_step_fails_the_job_and_sends_nothing_more(pipeline: PipelineStack) -> None:
    router_app.intake_handler(sqs_event(s3_event(pipeline, "uploads/bad.jpg")), LambdaContext())
    route_new_records(pipeline)
    [message] = pipeline.drain("people")
    store = jobs(pipeline)
    store.mark_failed(store.claim(message["job_id"], "people", "w1", "m1", 1.0, 1e12), 2.0, "PermanentError: corrupt")
    assert route_new_records(pipeline) == {"batchItemFailures": []}
    assert pipeline.drain("faces") == []
    assert store.get_job(message["job_id"])["status"] == "failed"


def test_a_poison_record_fails_alone_and_removals_are_ignored(pipeline: PipelineStack) -> None:
    router_app.intake_handler(sqs_event(s3_event(pipeline, "uploads/ok.jpg")), LambdaContext())
    event = pipeline.new_stream_event()
    [insert] = event["Records"]
    poison = load_event("stream_poison_record.json")  # names a step this pipeline no longer has
    removal = {**insert, "eventID": "remove-1", "eventName": "REMOVE"}
    removal["dynamodb"] = {**insert["dynamodb"], "OldImage": insert["dynamodb"]["NewImage"], "SequenceNumber": "2"}
    del removal["dynamodb"]["NewImage"]
    response = router_app.stream_handler({"Records": [poison, insert, removal]}, LambdaContext())
    assert response == {"batchItemFailures": [{"itemIdentifier": poison["dynamodb"]["SequenceNumber"]}]}
    assert [m["key"] for m in pipeline.drain("people")] == ["uploads/ok.jpg"]


# --- scaler --------------------------------------------------------------------------------


def desired(stack: PipelineStack, step: str) -> int:
    service = next(s["service"] for s in stack.config["steps"] if s["name"] == step)
    return stack.client("ecs").describe_services(cluster=stack.config["cluster"], services=[service])["services"][0]["desiredCount"]


def send(stack: PipelineStack, step: str, count: int) -> None:
    sqs = stack.client("sqs")
    for start in range(0, count, 10):
        entries = [{"Id": str(i), "MessageBody": "{}"} for i in range(start, min(start + 10, count))]
        sqs.send_message_batch(QueueUrl=stack.queue_url(step), Entries=entries)


def test_scaler_follows_the_table_holds_through_idle_and_returns_to_zero(pipeline: PipelineStack, capsys) -> None:
    step = aws.pipeline().step("people")
    send(pipeline, "people", 1)
    assert scaler_app.scale_step(step, now=1000.0)["to"] == 1
    assert desired(pipeline, "people") == 1
    send(pipeline, "people", 149)
    assert scaler_app.scale_step(step, now=1060.0)["to"] == 2
    # Workers take every message: nothing visible, all in flight. Capacity must stay.
    sqs = pipeline.client("sqs")
    taken = []
    while batch := sqs.receive_message(QueueUrl=pipeline.queue_url("people"), MaxNumberOfMessages=10, VisibilityTimeout=600).get(
        "Messages", []
    ):
        taken += batch
    assert scaler_app.scale_step(step, now=1120.0)["to"] == 2
    for message in taken:
        sqs.delete_message(QueueUrl=pipeline.queue_url("people"), ReceiptHandle=message["ReceiptHandle"])
    held = scaler_app.scale_step(step, now=1180.0)
    assert (held["to"], held["changed"]) == (2, False)
    assert "hold 2" in held["reason"]
    assert scaler_app.scale_step(step, now=1180.0 + 599)["to"] == 2
    assert scaler_app.scale_step(step, now=1180.0 + 600)["to"] == 0
    assert desired(pipeline, "people") == 0
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert [doc["DesiredTasks"] for doc in emf] == [[1.0], [2.0], [2.0], [2.0], [2.0], [0.0]]
    assert all(doc["Step"] == "people" and "Backlog" in doc for doc in emf)


def test_scaler_handler_scales_every_step_on_schedule_and_one_when_woken(pipeline: PipelineStack) -> None:
    send(pipeline, "faces", 3)
    result = scaler_app.handler(load_event("scheduled_event.json"), LambdaContext())
    assert [(d["step"], d["to"]) for d in result["decisions"]] == [("people", 0), ("faces", 1)]
    send(pipeline, "people", 1)
    result = scaler_app.handler({"step": "people"}, LambdaContext())
    assert [(d["step"], d["to"]) for d in result["decisions"]] == [("people", 1)]
    assert desired(pipeline, "people") == desired(pipeline, "faces") == 1


def test_finished_jobs_are_announced_on_the_topic(pipeline: PipelineStack, monkeypatch: pytest.MonkeyPatch) -> None:
    sns, sqs = pipeline.client("sns"), pipeline.client("sqs")
    topic = sns.create_topic(Name="jobs-finished")["TopicArn"]
    inbox = sqs.create_queue(QueueName=f"inbox-{pipeline.bucket}")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn, Attributes={"RawMessageDelivery": "true"})
    monkeypatch.setenv("PIPELINE_CONFIG", json.dumps({**pipeline.config, "notify_topic_arn": topic}))
    aws.reset()
    router_app.intake_handler(sqs_event(s3_event(pipeline, "uploads/told.jpg")), LambdaContext())
    route_new_records(pipeline)
    [message] = pipeline.drain("people")
    store = jobs(pipeline)
    store.mark_failed(store.claim(message["job_id"], "people", "w1", "m1", 1.0, 1e12), 2.0, "PermanentError: corrupt")
    route_new_records(pipeline)
    [note] = [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]]
    assert (note["job_id"], note["status"], note["key"]) == (message["job_id"], "failed", "uploads/told.jpg")
    assert "PermanentError: corrupt" in note["reason"]


def test_a_replayed_stream_record_announces_nothing_and_a_retried_job_is_announced_again(
    pipeline: PipelineStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    sns, sqs = pipeline.client("sns"), pipeline.client("sqs")
    topic = sns.create_topic(Name=f"once-{pipeline.bucket}")["TopicArn"]
    inbox = sqs.create_queue(QueueName=f"once-{pipeline.bucket}")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn, Attributes={"RawMessageDelivery": "true"})
    monkeypatch.setenv("PIPELINE_CONFIG", json.dumps({**pipeline.config, "notify_topic_arn": topic}))
    aws.reset()

    def announcements() -> list[dict]:
        notes = []
        while batch := sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            notes += [json.loads(m["Body"]) for m in batch]
            for m in batch:
                sqs.delete_message(QueueUrl=inbox, ReceiptHandle=m["ReceiptHandle"])
        return notes

    router_app.intake_handler(sqs_event(s3_event(pipeline, "uploads/once.jpg")), LambdaContext())
    route_new_records(pipeline)
    [message] = pipeline.drain("people")
    store = jobs(pipeline)
    store.mark_failed(store.claim(message["job_id"], "people", "w1", "m1", 1.0, 1e12), 2.0, "PermanentError: corrupt")
    failed = pipeline.new_stream_event()
    assert router_app.stream_handler(failed, LambdaContext()) == {"batchItemFailures": []}
    assert router_app.stream_handler(failed, LambdaContext()) == {"batchItemFailures": []}  # the event source retries the batch
    assert [note["status"] for note in announcements()] == ["failed"]
    # Retried (the router sends the step again) and failed again: a new end, announced again.
    assert store.retry_failed_step(message["job_id"], "people", 3.0)
    route_new_records(pipeline)
    [again] = pipeline.drain("people")
    assert again["job_id"] == message["job_id"]
    store.mark_failed(store.claim(message["job_id"], "people", "w2", "m2", 4.0, 1e12), 5.0, "PermanentError: still corrupt")
    second = pipeline.new_stream_event()
    router_app.stream_handler(second, LambdaContext())
    router_app.stream_handler({"Records": failed["Records"] + second["Records"]}, LambdaContext())  # both ends replayed
    assert [note["reason"] for note in announcements()] == ["step people failed: PermanentError: still corrupt"]
