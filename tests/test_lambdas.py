"""Both Lambda handlers against moto, with events shaped as Lambda delivers them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from pipeline_core import aws
from pipeline_core.jobs import ObjectRef, WorkMessage
from pipeline_core.jobstore import JobStore
from scaler import app as scaler_app
from stream_router import app as router_app
from tests.support.aws import s3_notification
from tests.support.items import raw_job
from tests.support.lambdas import LambdaContext, sqs_event
from tests.support.pipeline import PipelineStack

pytestmark = pytest.mark.integration

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
    job = raw_job(jobs(pipeline), ObjectRef(pipeline.bucket, "uploads/holiday photos/a+b.jpg", etag.strip('"')).job_id)
    assert job["step_names"] == ["people", "faces"]
    assert {name: step["state"] for name, step in job["steps"].items()} == {"people": "pending", "faces": "waiting"}
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
    claim = store.claims.claim(message["job_id"], "people", "w1", "m1", now=1.0, lease_seconds=1e12)
    store.claims.extend_lease(claim, until=2e12)  # a heartbeat: must send nothing
    store.claims.mark_done(claim, now=2.0, result_file="s3://r/people", timings={})
    assert route_new_records(pipeline) == {"batchItemFailures": []}
    assert pipeline.drain("people") == []
    [message] = pipeline.drain("faces")
    assert message["step"] == "faces"
    store.claims.mark_done(store.claims.claim(message["job_id"], "faces", "w1", "m2", 3.0, 1e12), 4.0, "s3://r/faces", {})
    route_new_records(pipeline)
    assert pipeline.drain("people") == pipeline.drain("faces") == []
    assert raw_job(store, message["job_id"])["status"] == "succeeded"


class LambdaInvokes:
    """Answers the router's Invoke calls in place of Lambda (moto cannot run functions), recording each, or failing them."""

    def __init__(self, fail: bool = False):
        self.payloads: list[tuple[str, str, dict]] = []
        self.fail = fail

    def attach(self, client: object) -> None:
        client.meta.events.register("before-parameter-build.lambda.Invoke", self.record)
        client.meta.events.register("before-call.lambda.Invoke", self.answer)

    def record(self, params: dict, **_: object) -> None:
        self.payloads.append((params["FunctionName"], params["InvocationType"], json.loads(params["Payload"])))

    def answer(self, **_: object) -> tuple[object, dict]:
        if self.fail:
            raise ClientError({"Error": {"Code": "TooManyRequestsException", "Message": "Rate exceeded"}}, "Invoke")
        return AWSResponse("", 202, {}, None), {"StatusCode": 202}


def test_the_router_wakes_the_scaler_once_per_step_per_batch(pipeline: PipelineStack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_CONFIG", json.dumps({**pipeline.config, "scaler_function": "unit-scaler"}))
    aws.reset()
    invokes = LambdaInvokes()
    invokes.attach(aws.client("lambda"))
    router_app.intake_handler(sqs_event(s3_event(pipeline, *(f"uploads/{n}.jpg" for n in range(5)))), LambdaContext())
    assert route_new_records(pipeline) == {"batchItemFailures": []}
    assert len(pipeline.drain("people")) == 5
    # Five jobs routed to one step in one batch: one wake-up, not five, saying how many were sent.
    assert invokes.payloads == [("unit-scaler", "Event", {"step": "people", "sent": 5})]


def test_a_failed_wake_up_fails_no_record(pipeline: PipelineStack, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.setenv("PIPELINE_CONFIG", json.dumps({**pipeline.config, "scaler_function": "unit-scaler"}))
    aws.reset()
    invokes = LambdaInvokes(fail=True)
    invokes.attach(aws.client("lambda"))
    router_app.intake_handler(sqs_event(s3_event(pipeline, "uploads/a.jpg", "uploads/b.jpg")), LambdaContext())
    assert route_new_records(pipeline) == {"batchItemFailures": []}
    assert len(pipeline.drain("people")) == 2
    assert invokes.payloads == [("unit-scaler", "Event", {"step": "people", "sent": 2})]
    assert [r.message for r in caplog.records if r.levelname == "WARNING"] == [
        "could not wake the scaler: its schedule will scale the step"
    ]


def test_a_failed_step_fails_the_job_and_sends_nothing_more(pipeline: PipelineStack) -> None:
    router_app.intake_handler(sqs_event(s3_event(pipeline, "uploads/bad.jpg")), LambdaContext())
    route_new_records(pipeline)
    [message] = pipeline.drain("people")
    store = jobs(pipeline)
    store.claims.mark_failed(store.claims.claim(message["job_id"], "people", "w1", "m1", 1.0, 1e12), 2.0, "PermanentError: corrupt")
    assert route_new_records(pipeline) == {"batchItemFailures": []}
    assert pipeline.drain("faces") == []
    assert raw_job(store, message["job_id"])["status"] == "failed"


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


def test_scaler_follows_the_table_keeps_one_warm_through_idle_and_returns_to_zero(pipeline: PipelineStack, capsys) -> None:
    step = aws.pipeline().step("people")  # the table alternative [[1, 1], [100, 2]], cooldown 300 s, idle 600 s
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
    assert held["reason"] == "idle 0s < 600s: wants 1 warm; fewer wanted for 0s < 300s: hold 2"
    assert scaler_app.scale_step(step, now=1180.0 + 299)["to"] == 2
    assert scaler_app.scale_step(step, now=1180.0 + 300)["to"] == 1  # after the cooldown, one stays warm
    assert scaler_app.scale_step(step, now=1180.0 + 599)["to"] == 1
    assert scaler_app.scale_step(step, now=1180.0 + 600)["to"] == 0
    assert desired(pipeline, "people") == 0
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert [doc["DesiredTasks"] for doc in emf] == [[1.0], [2.0], [2.0], [2.0], [2.0], [1.0], [1.0], [0.0]]
    assert all(doc["Step"] == "people" and "Backlog" in doc for doc in emf)


def test_scaler_handler_scales_every_step_on_schedule_and_one_when_woken(pipeline: PipelineStack) -> None:
    send(pipeline, "faces", 3)
    result = scaler_app.handler(load_event("scheduled_event.json"), LambdaContext())
    assert [(d["step"], d["to"]) for d in result["decisions"]] == [("people", 0), ("faces", 1)]
    send(pipeline, "people", 1)
    result = scaler_app.handler({"step": "people", "sent": 1}, LambdaContext())
    assert [(d["step"], d["to"]) for d in result["decisions"]] == [("people", 1)]
    assert desired(pipeline, "people") == desired(pipeline, "faces") == 1
    # Woken often (once per routed batch), it changes nothing more.
    again = scaler_app.handler({"step": "people", "sent": 1}, LambdaContext())
    assert [(d["step"], d["to"], d["changed"]) for d in again["decisions"]] == [("people", 1, False)]


def test_lag_a_wake_up_counts_what_the_router_sent_before_the_queue_shows_it(pipeline: PipelineStack) -> None:
    # Nothing is in the queue yet as far as a (lagging) reading goes; the router says it sent 150.
    result = scaler_app.handler({"step": "people", "sent": 150}, LambdaContext())
    [decision] = result["decisions"]
    assert (decision["to"], decision["reason"]) == (
        2,
        "backlog 150 (0 visible, 0 in flight, 0 delayed, 150 just sent): table [[1, 1], [100, 2]] wants 2: scale out 2",
    )


def emf_errors(out: str) -> list[tuple[str, list[float]]]:
    docs = [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]
    return [(doc["Step"], doc["ScalerStepErrors"]) for doc in docs if "ScalerStepErrors" in doc]


def test_isolation_a_missing_service_is_reported_and_the_other_steps_are_scaled(pipeline: PipelineStack, capsys, caplog) -> None:
    ecs = pipeline.client("ecs")
    people = next(s["service"] for s in pipeline.config["steps"] if s["name"] == "people")
    ecs.delete_service(cluster=pipeline.config["cluster"], service=people, force=True)
    send(pipeline, "faces", 3)
    result = scaler_app.handler(load_event("scheduled_event.json"), LambdaContext())
    assert result["errors"] == [
        {"step": "people", "reason": f"ServiceNotFound: service '{people}' not found in cluster '{pipeline.config['cluster']}': INACTIVE"}
    ]
    assert [(d["step"], d["to"]) for d in result["decisions"]] == [("faces", 1)]
    assert desired(pipeline, "faces") == 1
    assert emf_errors(capsys.readouterr().out) == [("people", [1.0])]
    assert [(r.message, r.step, r.reason) for r in caplog.records if r.levelname == "ERROR"] == [
        ("step not scaled", "people", result["errors"][0]["reason"])
    ]


def test_isolation_a_failing_task_protection_call_does_not_stop_the_next_step(pipeline: PipelineStack, monkeypatch, capsys) -> None:
    # Moto has no GetTaskProtection and runs no tasks: the ECS calls are stubbed in the order the handler makes them.
    monkeypatch.setenv("PIPELINE_CONFIG", json.dumps({**pipeline.config, "task_protection_api": True}))
    aws.reset()
    cluster = pipeline.config["cluster"]
    people, faces = (s["service"] for s in pipeline.config["steps"])
    send(pipeline, "faces", 3)
    ecs = aws.client("ecs")
    service = {"status": "ACTIVE", "runningCount": 1, "pendingCount": 0, "desiredCount": 1}
    with Stubber(ecs) as stub:
        stub.add_response(
            "describe_services", {"services": [service | {"serviceName": people}]}, {"cluster": cluster, "services": [people]}
        )
        stub.add_response(
            "list_tasks",
            {"taskArns": ["arn:aws:ecs:eu-west-1:123456789012:task/c/1"]},
            {"cluster": cluster, "serviceName": people, "desiredStatus": "RUNNING"},
        )
        stub.add_client_error("get_task_protection", "AccessDeniedException", "not authorized to perform ecs:GetTaskProtection")
        stub.add_response("describe_services", {"services": [service | {"serviceName": faces, "runningCount": 0, "desiredCount": 0}]})
        stub.add_response("update_service", {}, {"cluster": cluster, "service": faces, "desiredCount": 1})
        result = scaler_app.handler(load_event("scheduled_event.json"), LambdaContext())
        stub.assert_no_pending_responses()
    [error] = result["errors"]
    assert error["step"] == "people" and error["reason"] == (
        "AccessDeniedException: An error occurred (AccessDeniedException) when calling the GetTaskProtection operation: "
        "not authorized to perform ecs:GetTaskProtection"
    )
    assert [(d["step"], d["from"], d["to"], d["changed"]) for d in result["decisions"]] == [("faces", 0, 1, True)]
    assert emf_errors(capsys.readouterr().out) == [("people", [1.0])]


def test_conditional_state_write_two_interleaved_runs_cannot_undo_each_other(pipeline: PipelineStack, monkeypatch) -> None:
    step = aws.pipeline().step("people")  # table [[1, 1], [100, 2]], cooldown 300 s
    send(pipeline, "people", 150)
    assert scaler_app.scale_step(step, now=1000.0)["to"] == 2
    pipeline.drain("people")
    send(pipeline, "people", 1)
    assert scaler_app.scale_step(step, now=1060.0)["reason"].endswith("fewer wanted for 0s < 300s: hold 2")
    # Run A (scheduled) reads the state and sees a backlog of 1, 340 s after fewer were first wanted:
    # alone it would scale in to 1. While it decides, run B (woken by 149 new files) runs to the end.
    real_observe = scaler_app.observe
    runs: list[dict] = []

    def a_then_b(step_config, now, just_sent=0):
        seen = real_observe(step_config, now, just_sent)
        if now == 1400.0:  # run A's observation; B runs at 1401
            send(pipeline, "people", 149)
            runs.append(scaler_app.scale_step(step_config, now + 1))
        return seen

    monkeypatch.setattr(scaler_app, "observe", a_then_b)
    a = scaler_app.scale_step(step, now=1400.0)
    [b] = runs
    assert (b["to"], b["changed"], b["reason"]) == (
        2,
        False,
        "backlog 150 (150 visible, 0 in flight, 0 delayed): table [[1, 1], [100, 2]] wants 2: hold 2",
    )
    assert a == {
        "step": "people",
        "backlog": 1,
        "busy": 0,
        "from": 2,
        "to": 2,
        "reason": "another scaler run decided this step meanwhile: its decision stands",
        "changed": False,
        "superseded": True,
    }
    assert desired(pipeline, "people") == 2
    # B's state stands: the cooldown clock was reset by B's reading, A did not write its scale-in.
    item = boto3.resource("dynamodb").Table(pipeline.config["scaler_state_table"]).get_item(Key={"step": "people"})["Item"]
    assert (item["desired"], item["version"], "below_since" in item, item["updated_at"]) == (2, 3, False, 1401)


def test_conditional_state_write_refuses_a_stale_version(pipeline: PipelineStack) -> None:
    from scaler.decision import Decision, State

    first, second = Decision(1, State(idle_since=5.0), "first"), Decision(0, State(), "second")
    assert scaler_app.load_state("people") == (State(), 0)
    assert scaler_app.save_state("people", first, 0, now=10.0) is True
    assert scaler_app.save_state("people", second, 0, now=11.0) is False  # both read version 0: the second loses
    assert scaler_app.load_state("people") == (State(idle_since=5.0), 1)
    assert scaler_app.save_state("people", second, 1, now=12.0) is True
    assert scaler_app.save_state("people", first, 1, now=13.0) is False
    assert scaler_app.load_state("people") == (State(), 2)


def test_state_written_before_it_was_versioned_is_taken_over(pipeline: PipelineStack) -> None:
    from scaler.decision import Decision, State

    table = boto3.resource("dynamodb").Table(pipeline.config["scaler_state_table"])
    table.put_item(Item={"step": "people", "desired": 2, "idle_since": 900, "reason": "an older scaler", "updated_at": 950})
    assert scaler_app.load_state("people") == (State(idle_since=900), 0)
    assert scaler_app.save_state("people", Decision(2, State(idle_since=900), "now"), 0, now=1000.0) is True
    assert scaler_app.load_state("people") == (State(idle_since=900), 1)


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
    store.claims.mark_failed(store.claims.claim(message["job_id"], "people", "w1", "m1", 1.0, 1e12), 2.0, "PermanentError: corrupt")
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
    store.claims.mark_failed(store.claims.claim(message["job_id"], "people", "w1", "m1", 1.0, 1e12), 2.0, "PermanentError: corrupt")
    failed = pipeline.new_stream_event()
    assert router_app.stream_handler(failed, LambdaContext()) == {"batchItemFailures": []}
    assert router_app.stream_handler(failed, LambdaContext()) == {"batchItemFailures": []}  # the event source retries the batch
    assert [note["status"] for note in announcements()] == ["failed"]
    # Retried (the router sends the step again) and failed again: a new end, announced again.
    assert store.retries.retry_step(message["job_id"], "people", 3.0)
    route_new_records(pipeline)
    [again] = pipeline.drain("people")
    assert again["job_id"] == message["job_id"]
    store.claims.mark_failed(store.claims.claim(message["job_id"], "people", "w2", "m2", 4.0, 1e12), 5.0, "PermanentError: still corrupt")
    second = pipeline.new_stream_event()
    router_app.stream_handler(second, LambdaContext())
    router_app.stream_handler({"Records": failed["Records"] + second["Records"]}, LambdaContext())  # both ends replayed
    assert [note["reason"] for note in announcements()] == ["step people failed: PermanentError: still corrupt"]


def test_a_job_of_a_versioned_object_reaches_its_step_pinned_to_that_version(pipeline: PipelineStack) -> None:
    s3 = pipeline.client("s3")
    s3.put_bucket_versioning(Bucket=pipeline.bucket, VersioningConfiguration={"Status": "Enabled"})
    event = s3_event(pipeline, "uploads/versioned.jpg")
    version = event["Records"][0]["s3"]["object"]["versionId"]
    router_app.intake_handler(sqs_event(event), LambdaContext())
    route_new_records(pipeline)
    sqs = pipeline.client("sqs")
    [message] = sqs.receive_message(QueueUrl=pipeline.queue_url("people"), MaxNumberOfMessages=10)["Messages"]
    sent = WorkMessage.from_dict(json.loads(message["Body"]))
    assert (sent.object_ref.version, sent.object_ref.versioned) == (version, True)
