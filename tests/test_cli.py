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
