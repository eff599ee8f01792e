"""Several messages in flight per worker: real ``python -m worker`` processes with CONCURRENCY > 1 against moto."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.support.aws import StepStack
from tests.support.media import NOT_MEDIA, png
from tests.support.workers import wait_for

pytestmark = pytest.mark.workers

STEP = "detect"
SLOW = "tests.support.plugins:SlowProcessor"


def runs(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def upload(stack: StepStack, count: int, prefix: str = "uploads/many") -> list[str]:
    keys = [f"{prefix}/{index:02d}.png" for index in range(count)]
    for index, key in enumerate(keys):
        stack.put(key, png(8 + index, 8))
    for key in keys:  # one message each, as S3 sends them
        stack.send(stack.s3_event(key))
    return keys


def states(stack: StepStack, keys: list[str]) -> list[str | None]:
    return [stack.job(key).get("steps", {}).get(STEP, {}).get("state") for key in keys]


def max_overlap(jobs: list[dict]) -> int:
    """The most steps that were running at the same moment, from the job items' started/finished times."""
    edges = sorted([(job["steps"][STEP]["started_at"], 1) for job in jobs] + [(job["steps"][STEP]["finished_at"], -1) for job in jobs])
    running = peak = 0
    for _, change in edges:
        running += change
        peak = max(peak, running)
    return peak


def test_each_of_many_messages_in_flight_completes_exactly_once(stack: StepStack, spawn, tmp_path: Path) -> None:
    keys = upload(stack, 12)
    log = tmp_path / "runs.txt"
    options = json.dumps({"seconds": 1, "runs_file": str(log)})
    worker = spawn(stack.worker_env(STEP, PROCESSOR=SLOW, PROCESSOR_OPTIONS=options, CONCURRENCY=4))
    wait_for(lambda: states(stack, keys) == ["done"] * 12, 60, what="every job done")
    wait_for(lambda: stack.counts() == (0, 0), 10, what="queue drained")
    jobs = [stack.job(key) for key in keys]
    assert sorted(job_id for job_id, _, _ in runs(log)) == sorted(job["job_id"] for job in jobs), "a job ran twice or not at all"
    assert all(job["steps"][STEP]["attempts"] == 1 for job in jobs)
    assert len(worker.events("step done")) == 12
    assert max_overlap(jobs) >= 3, "the worker did not hold several messages at once"


def test_a_failure_in_one_message_leaves_the_others_done(stack: StepStack, spawn) -> None:
    keys = upload(stack, 5)
    stack.put("uploads/many/bad.png", NOT_MEDIA)
    stack.send(stack.s3_event("uploads/many/bad.png"))
    spawn(stack.worker_env(STEP, CONCURRENCY=4))
    wait_for(lambda: states(stack, [*keys, "uploads/many/bad.png"]) == ["done"] * 5 + ["failed"], 40, what="all settled")
    assert stack.job("uploads/many/bad.png")["steps"][STEP]["error"].startswith("PermanentError: not a supported image or video")


def test_sigterm_with_four_in_flight_hands_back_each_within_the_grace_period(stack: StepStack, spawn, tmp_path: Path) -> None:
    keys = upload(stack, 4)
    log = tmp_path / "runs.txt"
    options = json.dumps({"seconds": 60, "runs_file": str(log)})
    worker = spawn(stack.worker_env(STEP, PROCESSOR=SLOW, PROCESSOR_OPTIONS=options, CONCURRENCY=4, GRACE_SECONDS=1))
    wait_for(lambda: len(runs(log)) == 4, 30, what="four steps running")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
    assert states(stack, keys) == ["pending"] * 4
    assert len(worker.events("step released on shutdown")) == 4
    wait_for(lambda: stack.counts() == (4, 0), 10, what="four messages visible again")
    assert stack.counts(stack.dlq_url) == (0, 0)


def test_sigterm_with_four_in_flight_lets_each_finish_that_fits_the_grace_period(stack: StepStack, spawn, tmp_path: Path) -> None:
    keys = upload(stack, 4)
    log = tmp_path / "runs.txt"
    options = json.dumps({"seconds": 3, "runs_file": str(log)})
    worker = spawn(stack.worker_env(STEP, PROCESSOR=SLOW, PROCESSOR_OPTIONS=options, CONCURRENCY=4, GRACE_SECONDS=20))
    wait_for(lambda: len(runs(log)) == 4, 30, what="four steps running")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert states(stack, keys) == ["done"] * 4
    assert stack.counts() == (0, 0)


def test_one_heartbeat_keeps_every_message_in_flight(moto_endpoint: str, spawn, tmp_path: Path) -> None:
    stack = StepStack.create(moto_endpoint, visibility_timeout=3)
    keys = upload(stack, 4)
    log = tmp_path / "runs.txt"
    env = stack.worker_env(
        STEP, PROCESSOR=SLOW, PROCESSOR_OPTIONS=json.dumps({"seconds": 8, "runs_file": str(log)}), CONCURRENCY=4, HEARTBEAT_SECONDS=1
    )
    first = spawn(env, "first")
    wait_for(lambda: len(runs(log)) == 4, 30, what="four steps running in the first worker")
    spawn(env, "second")
    wait_for(lambda: states(stack, keys) == ["done"] * 4, 40, what="all done")
    assert len(runs(log)) == 4, "a message's visibility lapsed while its step ran: a second worker ran it again"
    assert len(first.events("step done")) == 4
