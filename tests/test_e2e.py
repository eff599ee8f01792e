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

from pipeline_core.jobs import split_s3_uri
from pipeline_core.jobstore import from_dynamo
from tests.support.aws import s3_notification
from tests.support.workers import REPO, wait_for
from tools import sample_media

SCHEMA = json.loads((REPO / "worker" / "result.schema.json").read_text())


class Runtime:
    """``python -m local_runtime`` and its JSON log."""

    def __init__(self, outputs_file: Path, endpoint: str, workdir: Path):
        self.log_path = workdir / "runtime.log"
        self.workdir = workdir
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
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
    return {job["key"]: job for job in jobs}


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
    # No GPU here: each model says it ran on the CPU (a GPU machine would say GPU:0 for faces-mtcnn).
    assert [(m["name"], m["device"]) for m in result(pipeline, "uploads/walk.mp4")["output"]["models"]] == [
        ("people-hog", "CPU"),
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
    duplicate = s3_notification(s3, outputs["bucket_name"], key)
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


def test_a_scale_in_while_a_worker_is_busy_lets_it_finish(pipeline: dict[str, Any]) -> None:
    path = sample_media.video(pipeline["media"] / "busy.mp4", frames=450)
    key = "uploads/busy.mp4"
    uploaded = time.time()
    assert gpupipe(pipeline, "submit", str(path)).returncode == 0
    wait_for(lambda: (j := jobs_by_key(pipeline).get(key)) and j["steps"]["detect"]["state"] == "running", 120, what="the job to start")
    time.sleep(1)  # the worker turns its protection on as it takes the message
    outputs = pipeline["outputs"]
    pipeline["aws"]["ecs"].update_service(
        cluster=outputs["cluster_name"], service=outputs["steps"]["detect"]["service_name"], desiredCount=0
    )
    wait_for(lambda: pipeline["runtime"].events("scale-in deferred: tasks are protected"), 30, what="the runner to defer the scale-in")
    job = wait_finished(pipeline, [key])[key]
    assert job["status"] == "succeeded" and job["steps"]["detect"]["attempts"] == 1
    print(f"\nscaled in to 0 mid-job; the busy worker finished: upload -> result {time.time() - uploaded:.1f}s")


def test_an_unreadable_file_is_retried_then_fails_its_job_and_lands_in_the_dlq(pipeline: dict[str, Any]) -> None:
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
    dlq = outputs["steps"]["detect"]["dlq_url"]

    def in_dlq() -> list[dict[str, Any]]:
        messages = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
        return [m for m in messages if "archived.jpg" in m["Body"]]

    [message] = wait_for(in_dlq, 30, what="the message in the step's DLQ")
    assert json.loads(message["Body"])["key"] == "uploads/archived.jpg"
    print(f"\nupload -> job failed after 3 attempts and message in the DLQ: {time.time() - uploaded:.1f}s")
