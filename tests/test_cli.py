"""gpupipe's messages when it cannot do what was asked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpupipe.cli import main
from tests.support.aws import free_port


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
    from pipeline_core.jobs import ObjectRef
    from pipeline_core.jobstore import JobStore
    from pipeline_core.segments import VideoTimeline, plan_segments

    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.endpoint)
    store = JobStore(stack.table)
    obj = ObjectRef(stack.bucket, "uploads/long.mp4", "etag")
    store.create_job(obj, ["detect"], 1.0)
    claim = store.claim(obj.job_id, "detect", "w", "m", 1.0, 60)
    store.record_split(claim, plan_segments(VideoTimeline(30, 30 * 480, 30), 60), 60, 2.0)
    for index in range(3):
        store.mark_segment_done(store.claim(obj.job_id, "detect", "w", f"m{index}", 3.0, 60, segment=index), 4.0, "s3://b/k", {})
    path = tmp_path / "stack.json"
    names = {"bucket_name": stack.bucket, "input_prefix": "uploads/", "results_prefix": "results/", "jobs_table_name": stack.table_name}
    path.write_text(json.dumps(names))
    assert main(["--outputs", str(path), "status"]) == 0
    assert "detect:running(segments 3/8)" in capsys.readouterr().out
