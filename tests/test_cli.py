"""gpupipe's messages when it cannot do what was asked."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from gpupipe.cli import main
from pipeline_core.graph import Graph
from pipeline_core.jobs import ObjectRef
from pipeline_core.jobstore import JobStore
from tests.support.aws import free_port
from tests.support.items import raw_job
from tests.support.pipeline import PipelineStack

pytestmark = pytest.mark.integration


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    path = tmp_path / "outputs.json"
    path.write_text(
        json.dumps(
            {
                name: {"value": value}
                for name, value in {
                    "bucket_name": "b",
                    "input_prefix": "uploads/",
                    "results_prefix": "results/",
                    "jobs_table_name": "t",
                }.items()
            }
        )
    )
    return path


def test_a_missing_file_is_named(outputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--outputs", str(outputs), "submit", "no-such-video.mp4"]) == 2
    assert "no-such-video.mp4: no such file" in capsys.readouterr().err


def test_an_unreachable_stack_says_so(
    outputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert main(["--outputs", str(outputs), "status"]) == 2
    assert "cannot reach the stack" in capsys.readouterr().err


def test_missing_outputs_are_explained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--outputs", str(tmp_path / "nowhere.json"), "status"]) == 2
    assert "terraform output -json" in capsys.readouterr().err
    not_ours = tmp_path / "other.json"
    not_ours.write_text(json.dumps({"vpc_id": {"value": "vpc-1"}}))
    assert main(["--outputs", str(not_ours), "status"]) == 2
    assert "is this a gpu-pipeline stack?" in capsys.readouterr().err


def test_status_shows_the_segments_done_of_a_split_video(
    stack, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline_core.segment_plan import SegmentPlan, VideoTimeline

    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.endpoint)
    store = JobStore(stack.table)
    obj = ObjectRef(stack.bucket, "uploads/long.mp4", "etag")
    store.create_job(obj, ["detect"], 1.0)
    claim = store.claims.claim(obj.job_id, "detect", "w", "m", 1.0, 60)
    store.splits.record_split(claim, SegmentPlan(VideoTimeline(30, 30 * 480, 30), 60), 2.0)
    for index in range(3):
        store.splits.mark_segment_done(
            store.claims.claim(obj.job_id, "detect", "w", f"m{index}", 3.0, 60, segment=index), 4.0, "s3://b/k", {}
        )
    path = tmp_path / "stack.json"
    names = {"bucket_name": stack.bucket, "input_prefix": "uploads/", "results_prefix": "results/", "jobs_table_name": stack.table_name}
    path.write_text(json.dumps(names))
    assert main(["--outputs", str(path), "status"]) == 0
    out = capsys.readouterr().out
    assert "detect:running(segments 3/8)" in out
    assert out.count("uploads/long.mp4") == 1  # the segments' own items are not jobs


@pytest.fixture
def live_stack(moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[PipelineStack, JobStore, Path]:
    """A pipeline stack in the emulator, its job store, and the outputs file the CLI reads it from."""
    stack = PipelineStack.create(moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    outputs = tmp_path / "stack.json"
    outputs.write_text(
        json.dumps(
            {
                "bucket_name": stack.bucket,
                "input_prefix": "uploads/",
                "results_prefix": "results/",
                "jobs_table_name": stack.config["jobs_table"],
            }
        )
    )
    return stack, JobStore(boto3.resource("dynamodb").Table(stack.config["jobs_table"])), outputs


def test_retry_from_reruns_a_step_and_every_step_after_it_and_keeps_the_rest(
    live_stack: tuple[PipelineStack, JobStore, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    stack, store, outputs = live_stack
    obj = ObjectRef(stack.bucket, "uploads/street.mp4", "v1")
    store.create_job(obj, Graph.of([("people", ()), ("faces", ()), ("anonymize", ("people", "faces"))]), now=1.0)
    cli = ["--outputs", str(outputs), "retry", "street.mp4", "--from", "anonymize"]
    assert main(cli) == 2
    assert "still pending: wait for it to end" in capsys.readouterr().err
    for index, name in enumerate(("people", "faces")):
        store.claims.mark_done(store.claims.claim(obj.job_id, name, "w", f"m{index}", 2.0, 60), 3.0, f"s3://r/{name}", {})
    assert store.joins.queue(obj.job_id, "anonymize", ("people", "faces"), "record-1", 3.5)
    store.claims.mark_done(store.claims.claim(obj.job_id, "anonymize", "w", "m3", 4.0, 60), 5.0, "s3://r/anonymize", {})
    assert raw_job(store, obj.job_id)["status"] == "succeeded"

    assert main(cli) == 0
    assert "from step anonymize: anonymize run again" in capsys.readouterr().out
    job = raw_job(store, obj.job_id)
    assert job["status"] == "running"
    assert {name: job["steps"][name]["state"] for name in ("people", "faces", "anonymize")} == {
        "people": "done",
        "faces": "done",
        "anonymize": "pending",
    }
    assert job["steps"]["people"]["result_file"] == "s3://r/people" and "result_file" not in job["steps"]["anonymize"]
    assert main([*cli[:-1], "nope"]) == 2
    assert "no step named 'nope'" in capsys.readouterr().err


def test_retry_puts_failed_steps_back_and_says_which(
    live_stack: tuple[PipelineStack, JobStore, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    stack, store, outputs = live_stack
    first, second, fine = (ObjectRef(stack.bucket, f"uploads/{name}", "v1") for name in ("a.jpg", "b.jpg", "c.jpg"))
    for obj in (first, second, fine):
        store.create_job(obj, ["people", "faces"], now=1.0)
    store.dead_letters.fail_step(first.job_id, "people", "moved to the dead-letter queue after 5 receives", 2.0, message_id="m1")
    store.claims.mark_done(store.claims.claim(second.job_id, "people", "w", "m2", 1.0, 60), 2.0, "s3://r", {})
    assert store.joins.queue(second.job_id, "faces", ("people",), "record-1", 2.5)  # the router, on people done
    store.claims.mark_failed(store.claims.claim(second.job_id, "faces", "w", "m3", 3.0, 60), 4.0, "PermanentError: corrupt")
    cli = ["--outputs", str(outputs), "retry"]

    assert main([*cli, "--failed", "--step", "faces"]) == 0
    out = capsys.readouterr().out
    assert f"retried {second.job_id} uploads/b.jpg step faces (was: PermanentError: corrupt)" in out
    assert "a.jpg" not in out
    assert main([*cli, "a.jpg"]) == 0
    assert "step people (was: moved to the dead-letter queue after 5 receives)" in capsys.readouterr().out
    jobs = {obj.key: raw_job(store, obj.job_id) for obj in (first, second, fine)}
    assert [jobs[key]["status"] for key in ("uploads/a.jpg", "uploads/b.jpg", "uploads/c.jpg")] == ["running", "running", "pending"]
    assert jobs["uploads/b.jpg"]["steps"]["faces"]["state"] == "pending" and jobs["uploads/b.jpg"]["steps"]["people"]["state"] == "done"
    assert main([*cli, "--failed"]) == 1
    assert "nothing to retry" in capsys.readouterr().out
    assert main([*cli, "no-such.jpg"]) == 2
    assert main([*cli, "--failed", "--step", "nope"]) == 2
    assert "no step named 'nope'" in capsys.readouterr().err
    assert main([*cli]) == 2
