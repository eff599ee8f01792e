"""The worker's start-up and task protection paths: a start-up failure is one clear log line and a
back-off, never a traceback and a tight restart loop; a protection request the ECS agent refuses (HTTP 200 with a
``failure`` body, as amazon-ecs-agent answers) is a failure, retried on the next beat."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from local_runtime.agent import AgentServer
from worker import main as worker_main
from worker.keepalive import TaskProtection

pytestmark = pytest.mark.unit

ENV = {"QUEUE_URL": "http://sqs/q", "JOBS_TABLE": "jobs", "STEP_NAME": "people", "RESULTS_BUCKET": "media"}


class MissingModel:
    """A processor whose model is not where the step says: what `make model` not yet run looks like."""

    def __init__(self, options: Any) -> None:
        raise FileNotFoundError("nothing under s3://media/models/efficientdet_d0_coco17_tpu-32")


class UnreadableModel:
    def __init__(self, options: Any) -> None:
        raise OSError("SavedModel file does not exist at: /tmp/savedmodel-x/{saved_model.pbtxt|saved_model.pb}")


@pytest.fixture
def agent() -> Iterator[AgentServer]:
    server = AgentServer()
    yield server
    server.close()


Started = tuple[int, list[dict[str, Any]], list[float]]


def start(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], processor: str, **env: str) -> Started:
    for name, value in {**ENV, "PROCESSOR": processor, **env}.items():
        monkeypatch.setenv(name, value)
    waited: list[float] = []
    code = worker_main.main(wait=waited.append)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    return code, lines, waited


@pytest.mark.parametrize("processor", [f"{__name__}:MissingModel", f"{__name__}:UnreadableModel"])
def test_a_missing_or_unreadable_model_fails_start_up_with_one_clear_line_and_backs_off(monkeypatch, capsys, processor: str) -> None:
    code, lines, waited = start(monkeypatch, capsys, processor, STARTUP_BACKOFF_SECONDS="240")
    assert code != 0
    errors = [line for line in lines if line["level"] == "error"]
    assert len(errors) == 1, lines
    [error] = errors
    assert error["event"] == "cannot start" and "exception" not in error, "one line, no traceback"
    assert "model" in error["reason"] and error["step"] == "people"
    assert waited == [240.0], "the task waits before it exits, so ECS does not restart it in a tight loop"


def test_a_missing_model_line_says_what_to_do(monkeypatch, capsys) -> None:
    _, lines, _ = start(monkeypatch, capsys, f"{__name__}:MissingModel")
    [error] = [line for line in lines if line["level"] == "error"]
    assert "make model MODEL=efficientdet_d0_coco17_tpu-32" in error["hint"]


def test_a_broken_setting_backs_off_too(monkeypatch, capsys) -> None:
    code, lines, waited = start(monkeypatch, capsys, "media-info", VISIBILITY_TIMEOUT="soon")
    assert code == 2 and len(waited) == 1 and waited[0] > 0
    [error] = [line for line in lines if line["level"] == "error"]
    assert "VISIBILITY_TIMEOUT" in error["reason"]


def test_a_refused_protection_request_is_a_failure_and_is_retried(agent: AgentServer, caplog) -> None:
    agent.refuse("t1", "TASK_NOT_VALID")
    protection = TaskProtection(agent.uri("t1"), expires_minutes=60, clock=lambda: 0.0)
    with caplog.at_level(logging.WARNING, logger="worker.keepalive"):
        protection.set(True)
    assert protection.enabled is not True, "a 200 with a failure body is not protection"
    assert any("TASK_NOT_VALID" in str(getattr(record, "reason", "")) for record in caplog.records)
    agent.refuse("t1", None)
    protection.set(True)  # the next beat asks again
    assert protection.enabled is True and agent.is_protected("t1")
    assert [r["ProtectionEnabled"] for r in agent.requests] == [True, True]
