"""End to end: terraform/examples/local on moto, the local runtime as its own process, real workers, real detection.

The runtime plays Lambda's triggers and ECS (local_runtime/); everything it runs is the real
code: intake and router handlers, the scaler, `python -m worker` with the detect processor.
Each test prints the figures it saw.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from pipeline_core.dynamo.table import from_dynamo
from pipeline_core.jobs import split_s3_uri
from pipeline_core.records import is_job_item
from tests.support import iam_contract, iam_recorder
from tests.support.aws import s3_notification
from tests.support.workers import REPO, wait_for
from tools import sample_media

pytestmark = pytest.mark.e2e

SCHEMA = json.loads((REPO / "worker" / "result.schema.json").read_text())


class Runtime:
    """``python -m local_runtime`` and its JSON log."""

    def __init__(self, outputs_file: Path, endpoint: str, workdir: Path):
        self.log_path = workdir / "runtime.log"
        self.workdir = workdir
        # Every AWS call of the runtime's handlers and its workers is recorded for the IAM contract.
        self.calls_log = workdir / "aws-calls.jsonl"
        recorder = iam_recorder.sitecustomize_dir(workdir / "recorder", self.calls_log)
        path = os.pathsep.join([str(REPO), str(recorder)])
        env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        env.pop("AWS_ENDPOINT_URL", None)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "local_runtime",
                    "--outputs",
                    str(outputs_file),
                    "--endpoint",
                    endpoint,
                    "--workdir",
                    str(workdir),
                    "--scaler-period",
                    "2",
                ],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if name is None or entry.get("event") == name:
                found.append(entry)
        return found

    def lambda_logs(self, message: str) -> list[dict[str, Any]]:
        """The handlers' Powertools log lines with this message."""
        return [entry for entry in self.events() if entry.get("message") == message]

    def worker_logs(self) -> list[dict[str, Any]]:
        entries = []
        for path in self.workdir.glob("worker-*.log"):
            for line in path.read_text().splitlines():
                if line.startswith("{"):
                    entries.append(json.loads(line))
        return entries

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="module")
def pipeline(local_stack, moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    _, outputs, aws = local_stack
    workdir = tmp_path_factory.mktemp("runtime")
    outputs_file = workdir / "outputs.json"
    outputs_file.write_text(json.dumps(outputs))
    runtime = Runtime(outputs_file, moto_endpoint, workdir)
    media = tmp_path_factory.mktemp("media")
    try:
        wait_for(lambda: runtime.events("local runtime started"), 60, what="the local runtime to start")
        yield {"outputs": outputs, "aws": aws, "runtime": runtime, "media": media, "endpoint": moto_endpoint}
    finally:
        runtime.stop()


def gpupipe(pipeline: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    outputs_file = pipeline["runtime"].workdir / "outputs.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "AWS_ENDPOINT_URL": pipeline["endpoint"]}
    return subprocess.run(
        [sys.executable, "-m", "gpupipe", "--outputs", str(outputs_file), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def jobs_by_key(pipeline: dict[str, Any]) -> dict[str, dict[str, Any]]:
    table = pipeline["outputs"]["jobs_table_name"]
    items = pipeline["aws"]["dynamodb"].scan(TableName=table)["Items"]
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    jobs = [from_dynamo({k: deserializer.deserialize(v) for k, v in item.items()}) for item in items]
    return {job["key"]: job for job in jobs if is_job_item(job)}  # the table also holds split steps' segment items


def wait_finished(pipeline: dict[str, Any], keys: list[str], timeout: float = 240) -> dict[str, dict[str, Any]]:
    def finished() -> dict[str, dict[str, Any]] | None:
        jobs = jobs_by_key(pipeline)
        done = {key: jobs[key] for key in keys if key in jobs and jobs[key]["status"] in ("succeeded", "failed")}
        return done if len(done) == len(keys) else None

    return wait_for(finished, timeout, interval=1, what=f"jobs {keys} to finish")


def desired(pipeline: dict[str, Any]) -> int:
    step = pipeline["outputs"]["steps"]["detect"]
    ecs = pipeline["aws"]["ecs"]
    return ecs.describe_services(cluster=pipeline["outputs"]["cluster_name"], services=[step["service_name"]])["services"][0][
        "desiredCount"
    ]


def result(pipeline: dict[str, Any], key: str) -> dict[str, Any]:
    """The result document that the job item of ``key`` records as committed for the detect step."""
    bucket, result_key = split_s3_uri(jobs_by_key(pipeline)[key]["steps"]["detect"]["result_file"])
    return json.loads(pipeline["aws"]["s3"].get_object(Bucket=bucket, Key=result_key)["Body"].read())


def test_happy_path_two_images_and_a_video_scale_from_zero_and_back(pipeline: dict[str, Any]) -> None:
    media = pipeline["media"]
    files = [
        sample_media.scene_image(media / "person.jpg"),
        sample_media.image(media / "coffee.png", "coffee"),
        sample_media.video(media / "walk.mp4", frames=90),
    ]
    assert desired(pipeline) == 0
    uploaded = time.time()
    submitted = gpupipe(pipeline, "submit", *map(str, files))
    assert submitted.returncode == 0, submitted.stderr
    keys = [f"uploads/{path.name}" for path in files]
    jobs = wait_finished(pipeline, keys)
    finished = time.time()
    assert {key: job["status"] for key, job in jobs.items()} == dict.fromkeys(keys, "succeeded")
    for key in keys:
        errors = list(Draft202012Validator(SCHEMA).iter_errors(result(pipeline, key)))
        assert not errors, errors[:3]
    assert result(pipeline, "uploads/person.jpg")["output"]["summary"]["face"]["max_count"] == 1
    assert result(pipeline, "uploads/coffee.png")["output"]["summary"]["face"]["max_count"] == 0
    # No GPU here: each model says it ran on the CPU (a GPU machine would say GPU:0 for both).
    assert [(m["name"], m["device"]) for m in result(pipeline, "uploads/walk.mp4")["output"]["models"]] == [
        ("people-ssdlite", "CPU"),
        ("faces-mtcnn", "CPU"),
    ]
    scale_out = next(e for e in pipeline["runtime"].events("scale") if e["to"] > e["from"])
    # The scaler sets the service, then the runtime logs the decision: wait for the log line.
    scale_in = wait_for(
        lambda: [e for e in pipeline["runtime"].events("scale") if e["to"] == 0], 60, what="scale back to zero after the idle period"
    )
    assert "scale to min 0" in scale_in[-1]["reason"]
    assert desired(pipeline) == 0
    status = gpupipe(pipeline, "status")
    assert "succeeded 3" in status.stdout
    fetched = gpupipe(pipeline, "results", "walk.mp4", "--out", str(media / "results"))
    assert fetched.returncode == 0 and "contact-sheet.jpg" in fetched.stdout, fetched.stderr
    print(f"\nupload -> first scale-out decision: {scale_out['ts'] - uploaded:.1f}s; upload -> all results: {finished - uploaded:.1f}s")


# Its own waits (the job to start, 120 s; to finish, 240 s) bound it, not the suite's 180 s default: on a loaded
# 2-core CI machine a replacement task loading its model and a 600-frame or longer video take minutes.
@pytest.mark.timeout(420)
def test_a_worker_killed_mid_video_and_the_job_finishes_exactly_once(pipeline: dict[str, Any]) -> None:
    path = sample_media.video(pipeline["media"] / "long walk.mp4", frames=600)
    key = "uploads/long walk.mp4"
    uploaded = time.time()
    assert gpupipe(pipeline, "submit", str(path)).returncode == 0
    running = wait_for(
        lambda: (j := jobs_by_key(pipeline).get(key)) and j["steps"]["detect"]["state"] == "running" and j, 120, what="the job to start"
    )
    task_id = running["steps"]["detect"]["worker_id"].rsplit("-", 1)[1]
    [started] = [e for e in pipeline["runtime"].events("task started") if e["task"] == task_id]
    os.kill(started["pid"], signal.SIGKILL)
    job = wait_finished(pipeline, [key], timeout=240)[key]
    assert job["status"] == "succeeded"
    assert job["steps"]["detect"]["attempts"] == 2
    done = [e for e in pipeline["runtime"].worker_logs() if e.get("event") == "step done" and e.get("key") == key]
    assert len(done) == 1, "the step must be marked done exactly once"
    assert result(pipeline, key)["attempt"] == 2
    print(f"\nkilled worker {task_id}; upload -> result despite the kill: {time.time() - uploaded:.1f}s")


def test_a_duplicate_s3_event_gives_one_job(pipeline: dict[str, Any]) -> None:
    path = sample_media.image(pipeline["media"] / "twice.png", "chelsea")
    key = "uploads/twice.png"
    assert gpupipe(pipeline, "submit", str(path)).returncode == 0
    wait_finished(pipeline, [key])
    s3, sqs, outputs = pipeline["aws"]["s3"], pipeline["aws"]["sqs"], pipeline["outputs"]
    duplicate = s3_notification(s3, outputs["bucket_name"], key)  # as the emulator (like S3) sent the original: its versionId
    resent = time.time()
    sqs.send_message(QueueUrl=outputs["intake_queue_url"], MessageBody=json.dumps(duplicate))
    wait_for(
        lambda: (
            sqs.get_queue_attributes(QueueUrl=outputs["intake_queue_url"], AttributeNames=["ApproximateNumberOfMessages"])["Attributes"][
                "ApproximateNumberOfMessages"
            ]
            == "0"
        ),
        30,
        what="intake drained",
    )
    time.sleep(3)
    assert [k for k in jobs_by_key(pipeline) if k == key] == [key]
    claims = [e for e in pipeline["runtime"].worker_logs() if e.get("event") == "step claimed" and e.get("key") == key]
    assert len(claims) == 1
    print(f"\nduplicate event re-sent {time.time() - resent:.1f}s ago: still one job, one claim")


def test_a_poison_file_fails_its_job_with_a_reason_and_others_are_unaffected(pipeline: dict[str, Any]) -> None:
    media = pipeline["media"]
    poison = media / "poison.jpg"
    poison.write_bytes(b"%PDF-1.7 this is a document renamed to .jpg")
    good = sample_media.image(media / "after poison.jpg", "astronaut")
    uploaded = time.time()
    assert gpupipe(pipeline, "submit", str(poison), str(good)).returncode == 0
    jobs = wait_finished(pipeline, ["uploads/poison.jpg", "uploads/after poison.jpg"])
    assert jobs["uploads/poison.jpg"]["status"] == "failed"
    assert "not a supported image or video" in jobs["uploads/poison.jpg"]["steps"]["detect"]["error"]
    assert jobs["uploads/after poison.jpg"]["status"] == "succeeded"
    status = gpupipe(pipeline, "status")
    assert status.returncode == 1 and "not a supported image or video" in status.stdout
    print(f"\nupload -> poison failed and neighbour done: {time.time() - uploaded:.1f}s")


# Its own waits (the job to start, 120 s; to finish, 240 s) bound it, not the suite's 180 s default: on a loaded
# 2-core CI machine a replacement task loading its model and a 600-frame or longer video take minutes.
@pytest.mark.timeout(420)
def test_a_scale_in_while_a_worker_is_busy_lets_it_finish(pipeline: dict[str, Any]) -> None:
    path = sample_media.video(pipeline["media"] / "busy.mp4", frames=1800)  # long enough to still run when the scale-in comes
    key = "uploads/busy.mp4"
    uploaded = time.time()
    assert gpupipe(pipeline, "submit", str(path)).returncode == 0
    wait_for(lambda: (j := jobs_by_key(pipeline).get(key)) and j["steps"]["detect"]["state"] == "running", 120, what="the job to start")
    time.sleep(1)  # the worker turns its protection on as it takes the message
    outputs = pipeline["outputs"]

    def scale_in_deferred() -> bool:
        # The scaler never sets fewer tasks than are busy: when its schedule runs it between this scale-in
        # and the runner's next look at the service, it sets the count back to 1 first. So scale in again.
        if pipeline["runtime"].events("scale-in deferred: tasks are protected"):
            return True
        pipeline["aws"]["ecs"].update_service(
            cluster=outputs["cluster_name"], service=outputs["steps"]["detect"]["service_name"], desiredCount=0
        )
        return False

    wait_for(scale_in_deferred, 60, interval=1, what="the runner to defer the scale-in")
    job = wait_finished(pipeline, [key])[key]
    assert job["status"] == "succeeded" and job["steps"]["detect"]["attempts"] == 1
    print(f"\nscaled in to 0 mid-job; the busy worker finished: upload -> result {time.time() - uploaded:.1f}s")


def test_a_long_video_is_split_into_segments_and_merged_into_one_result(pipeline: dict[str, Any]) -> None:
    # 100 s is over SEGMENT_SECONDS (60) plus a quarter: two segments, each a message on the step's queue.
    path = sample_media.long_video(pipeline["media"] / "long drive.avi", seconds=100)
    key = "uploads/long drive.avi"
    uploaded = time.time()
    assert gpupipe(pipeline, "submit", str(path)).returncode == 0
    job = wait_finished(pipeline, [key])[key]
    step = job["steps"]["detect"]
    assert job["status"] == "succeeded", step.get("error")
    assert (step["segment_count"], step["segments_done"]) == (2, 2)
    document = result(pipeline, key)
    Draft202012Validator(json.loads((REPO / "worker" / "result.schema.json").read_text())).validate(document)
    assert [segment["index"] for segment in document["segments"]] == [0, 1]
    seconds = [frame["timestamp"] for frame in document["output"]["frames"]]
    assert seconds == sorted(seconds) and seconds[0] == 0 and seconds[-1] >= 95, seconds
    split = [e for e in pipeline["runtime"].worker_logs() if e.get("event") == "step split" and e.get("key") == key]
    assert len(split) == 1 and split[0]["segments"] == 2
    print(f"\nupload -> merged result of a 100 s video in 2 segments: {time.time() - uploaded:.1f}s")


def test_an_unreadable_file_is_retried_then_fails_its_job(pipeline: dict[str, Any]) -> None:
    # An archived object (uploaded straight into Glacier, or archived by a lifecycle rule before it
    # was processed) cannot be read until restored: a transient error on every attempt.
    outputs, s3, sqs = pipeline["outputs"], pipeline["aws"]["s3"], pipeline["aws"]["sqs"]
    archived = sample_media.image(pipeline["media"] / "archived.jpg", "astronaut")
    uploaded = time.time()
    s3.put_object(Bucket=outputs["bucket_name"], Key="uploads/archived.jpg", Body=archived.read_bytes(), StorageClass="GLACIER")
    good = sample_media.image(pipeline["media"] / "beside archived.png", "coffee")
    assert gpupipe(pipeline, "submit", str(good)).returncode == 0
    jobs = wait_finished(pipeline, ["uploads/archived.jpg", "uploads/beside archived.png"])
    step = jobs["uploads/archived.jpg"]["steps"]["detect"]
    assert jobs["uploads/archived.jpg"]["status"] == "failed"
    assert step["error"].startswith("gave up after 3 attempts") and "InvalidObjectState" in step["error"]
    assert step["attempts"] == 3
    assert jobs["uploads/beside archived.png"]["status"] == "succeeded"
    # The worker failed the step itself and deleted the message: retries are counted in the job item,
    # so the message never needed the DLQ (whose consumer is for receives that end in no answer).
    dlq = outputs["steps"]["detect"]["dlq_url"]
    attributes = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    wait_for(
        lambda: all(
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=attributes)["Attributes"] == dict.fromkeys(attributes, "0")
            for url in (outputs["steps"]["detect"]["queue_url"], dlq)
        ),
        30,
        what="the step queue and its DLQ empty",
    )
    print(f"\nupload -> job failed after 3 attempts, message deleted: {time.time() - uploaded:.1f}s")


def test_mixed_case_suffixes_become_jobs(pipeline: dict[str, Any]) -> None:
    media = pipeline["media"]
    files = [sample_media.image(media / "photo.Jpg", "astronaut"), sample_media.video(media / "CLIP.Mp4", frames=30)]
    assert gpupipe(pipeline, "submit", *map(str, files)).returncode == 0
    jobs = wait_finished(pipeline, ["uploads/photo.Jpg", "uploads/CLIP.Mp4"], timeout=120)
    assert {key: job["status"] for key, job in jobs.items()} == {"uploads/photo.Jpg": "succeeded", "uploads/CLIP.Mp4": "succeeded"}


def test_a_dead_lettered_message_fails_its_job_with_the_reason_and_gpupipe_retry_runs_it_again(pipeline: dict[str, Any]) -> None:
    # A raw S3 notification dead-lettered on the step's queue, for an object no job was made for (intake
    # ignores its suffix; the worker sniffs media by content): the consumer makes its job and fails it.
    # The object lies under the input prefix, the only place the worker's role may read.
    outputs, s3, sqs = pipeline["outputs"], pipeline["aws"]["s3"], pipeline["aws"]["sqs"]
    key = "uploads/dead letter.png.orig"
    image = sample_media.image(pipeline["media"] / "dead letter.png", "coffee")
    s3.put_object(Bucket=outputs["bucket_name"], Key=key, Body=image.read_bytes())
    sent = time.time()
    sqs.send_message(
        QueueUrl=outputs["steps"]["detect"]["dlq_url"], MessageBody=json.dumps(s3_notification(s3, outputs["bucket_name"], key))
    )
    job = wait_finished(pipeline, [key], timeout=60)[key]
    max_receives = json.loads(outputs["pipeline_config"])["steps"][0]["max_receive_count"]
    assert job["status"] == "failed"
    assert job["steps"]["detect"]["error"] == f"moved to the dead-letter queue after {max_receives} receives"
    failed_in = time.time() - sent
    status = gpupipe(pipeline, "status")
    assert status.returncode == 1 and "gpupipe retry --failed" in status.stdout
    retried = gpupipe(pipeline, "retry", "dead letter.png.orig")
    assert retried.returncode == 0, retried.stderr
    assert f"retried {job['job_id']} {key} step detect" in retried.stdout
    wait_for(lambda: jobs_by_key(pipeline)[key]["status"] == "succeeded", 120, what="the retried job to succeed")
    again = jobs_by_key(pipeline)[key]["steps"]["detect"]
    assert again["state"] == "done" and "error" not in again
    assert result(pipeline, key)["output"]["summary"]["face"]["max_count"] == 0
    print(f"\ndead-lettered -> job failed: {failed_in:.1f}s; retry -> succeeded: {time.time() - sent - failed_in:.1f}s")


def scaler_calls_as_on_aws(pipeline: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The scaler's calls where tasks run: moto runs no tasks and has no GetTaskProtection, so the ECS
    calls are answered here (two running tasks, one protected) and the rest goes to the emulator."""
    import boto3
    from botocore.awsrequest import AWSResponse

    from local_runtime.events import LambdaContext
    from pipeline_core import aws
    from scaler import app as scaler_app

    outputs, calls = pipeline["outputs"], []
    config = json.loads(outputs["pipeline_config"]) | {"scaler_function": "", "task_protection_api": True}
    cluster_arn = f"arn:aws:ecs:{outputs['region']}:123456789012:cluster/{config['cluster']}"
    tasks = [f"{cluster_arn.replace(':cluster/', ':task/')}/{n:032x}" for n in (1, 2)]
    answers = {
        "DescribeServices": lambda p: {"services": [{"status": "ACTIVE", "runningCount": 2, "pendingCount": 0, "desiredCount": 2}]},
        "ListTasks": lambda p: {"taskArns": tasks},
        "GetTaskProtection": lambda p: {"protectedTasks": [{"taskArn": t, "protectionEnabled": t == tasks[0]} for t in p["tasks"]]},
        "UpdateService": lambda p: {"service": {"serviceName": p["service"], "desiredCount": p["desiredCount"]}},
    }

    def answer(model: Any, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if model.name not in answers:
            return None
        return AWSResponse("http://ecs.invalid", 200, {}, None), answers[model.name](json.loads(params["body"] or b"{}"))

    monkeypatch.setenv("PIPELINE_CONFIG", json.dumps(config))
    monkeypatch.setenv("AWS_ENDPOINT_URL", pipeline["endpoint"])
    session = boto3.session.Session()
    session._session.register("before-parameter-build", iam_recorder.handler(calls.append))
    session._session.register("before-call.ecs", answer)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)
    aws.reset()
    try:
        scaler_app.handler({}, LambdaContext("scaler"))
    finally:
        aws.reset()
    for call in calls:
        call["main"] = "local_runtime"
    return calls


def test_every_aws_call_is_allowed_by_its_components_role_as_applied(
    pipeline: dict[str, Any], local_stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Runs last in this module: the calls of every test above, of the handlers and of the workers.
    terraform, _, _ = local_stack
    state = iam_contract.State.read(terraform.state)
    calls = iam_recorder.read(pipeline["runtime"].calls_log) + scaler_calls_as_on_aws(pipeline, monkeypatch)
    verdict = iam_contract.check(calls, state)
    assert not verdict.unattributed, f"calls no component is known to make: {verdict.unattributed[:5]}"
    assert not verdict.denied, "denied on AWS:\n  " + "\n  ".join(verdict.denied)
    for component, checked in verdict.checked.items():
        assert checked, f"no call of {component} was seen: the contract did not exercise it"
    scaler = " ".join(verdict.checked["scaler"])
    assert "ecs:ListTasks on *" in scaler and "ecs:GetTaskProtection" in scaler, "the scaler's protection path was not exercised"
    assert "lambda:InvokeFunction" in " ".join(verdict.checked["router"]), "the router never woke the scaler"
    policies = iam_contract.role_policies_by_component(state)
    findings = {name: [finding for policy in documents for finding in iam_contract.lint(policy)] for name, documents in policies.items()}
    assert not any(findings.values()), f"parliament: {findings}"
    print(f"\n{len(calls)} AWS calls; allowed requests per component: " + ", ".join(f"{c} {len(r)}" for c, r in verdict.checked.items()))


def test_eight_versions_of_one_key_uploaded_back_to_back_make_eight_jobs_each_reporting_its_own_versions_bytes(
    pipeline: dict[str, Any],
) -> None:
    """The emulator's S3 notifications name the version, as AWS's do for a versioned bucket (moto's alone do not), so
    this runs the versioned path: eight uploads of one key, each a job pinned to its own version."""
    s3, bucket, key = pipeline["aws"]["s3"], pipeline["outputs"]["bucket_name"], "uploads/versions.jpg"
    uploads = {}
    for index in range(8):
        body = sample_media.scene_image(pipeline["media"] / f"version-{index}.jpg", size=(640 + 32 * index, 480)).read_bytes()
        put = s3.put_object(Bucket=bucket, Key=key, Body=body)
        uploads[put["VersionId"]] = (put["ETag"].strip('"'), len(body), 640 + 32 * index)
    table = pipeline["outputs"]["jobs_table_name"]

    def finished() -> list[dict[str, Any]] | None:
        items = pipeline["aws"]["dynamodb"].scan(TableName=table)["Items"]
        from boto3.dynamodb.types import TypeDeserializer

        jobs = [from_dynamo({k: TypeDeserializer().deserialize(v) for k, v in item.items()}) for item in items]
        mine = [job for job in jobs if is_job_item(job) and job["key"] == key and job["status"] in ("succeeded", "failed")]
        return mine if len(mine) == len(uploads) else None

    jobs = wait_for(finished, 240, interval=1, what="eight jobs, one per version")
    assert {job["version"] for job in jobs} == set(uploads) and all(job["versioned"] for job in jobs)
    for job in jobs:
        assert job["status"] == "succeeded", job["steps"]["detect"].get("error")
        bucket_name, result_key = split_s3_uri(job["steps"]["detect"]["result_file"])
        document = json.loads(s3.get_object(Bucket=bucket_name, Key=result_key)["Body"].read())
        etag, size, width = uploads[job["version"]]
        assert (document["input"]["version_id"], document["input"]["etag"], document["input"]["size"]) == (job["version"], etag, size)
        assert document["output"]["media"]["width"] == width, "the job read another version's bytes"
