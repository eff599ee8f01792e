"""The worker as it runs in ECS: real `python -m worker` processes against a moto server.

Each test drives one numbered behaviour of the worker runtime (README, "Worker runtime") and
checks what a user would: the job item, the result object, the queue and its
DLQ, and the worker's JSON logs.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from local_runtime.agent import AgentServer
from pipeline_core.jobs import ObjectRef, WorkMessage
from pipeline_core.jobstore import JobStore
from tests.support.aws import StepStack
from tests.support.media import EMPTY, NOT_MEDIA, png
from tests.support.workers import REPO, wait_for

pytestmark = pytest.mark.workers

STEP = "detect"
SLOW = "tests.support.plugins:SlowProcessor"
FLAKY = "tests.support.plugins:FlakyProcessor"


def job(stack: StepStack, key: str) -> dict:
    return stack.job(key)


def step_state(stack: StepStack, key: str) -> str | None:
    return job(stack, key).get("steps", {}).get(STEP, {}).get("state")


def wait_state(stack: StepStack, key: str, state: str, timeout: float = 30) -> dict:
    wait_for(lambda: step_state(stack, key) == state, timeout, what=f"{key} {state}")
    return job(stack, key)


def drained(stack: StepStack) -> bool:
    return stack.counts() == (0, 0)


def runs(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def router_message(stack: StepStack, key: str) -> str:
    """Create the job as the router would, and return its step message body."""
    head = stack.aws["s3"].head_object(Bucket=stack.bucket, Key=key)
    obj = ObjectRef(stack.bucket, key, head["ETag"].strip('"'), head["ContentLength"])
    assert JobStore(stack.table).create_job(obj, [STEP], now=1.0)
    return WorkMessage.for_job(obj, STEP).to_body()


# --- 1. polling, message shapes, keys ------------------------------------------------


def test_s3_test_event_is_deleted_and_the_worker_carries_on(stack: StepStack, spawn, tmp_path: Path) -> None:
    stack.send(json.loads((Path(__file__).parent / "fixtures/events/s3_test_event.json").read_text()))
    stack.put("uploads/after.png", png())
    stack.send(stack.s3_event("uploads/after.png"))
    alive = tmp_path / "worker.alive"
    worker = spawn(stack.worker_env(STEP, HEALTH_FILE=alive))
    wait_state(stack, "uploads/after.png", "done")
    wait_for(lambda: drained(stack), 10, what="queue drained")
    assert worker.events("s3 test event deleted")
    assert worker.process.poll() is None
    healthcheck = subprocess.run(
        [sys.executable, "-m", "worker.health"], env={"HEALTH_FILE": str(alive), "PYTHONPATH": str(REPO)}, check=False
    )
    assert healthcheck.returncode == 0, "the container healthcheck should see a live worker"


def test_encoded_keys_and_several_records_make_several_jobs(stack: StepStack, spawn) -> None:
    keys = ["uploads/holiday photos/a b.png", "uploads/1+1=2.png", "uploads/日本/café ü.png"]
    for key in keys:
        stack.put(key, png())
    stack.send(stack.s3_event(*keys))
    spawn(stack.worker_env(STEP))
    for key in keys:
        item = wait_state(stack, key, "done")
        assert item["key"] == key
        result = stack.committed_result(item, STEP)
        assert result["input"]["key"] == key
        assert result["output"]["format"] == "png"
    wait_for(lambda: drained(stack), 10, what="queue drained")


def test_invalid_message_goes_to_the_dlq_without_stopping_the_worker(stack: StepStack, spawn) -> None:
    stack.send("this is not json")
    worker = spawn(stack.worker_env(STEP))
    wait_for(lambda: stack.counts(stack.dlq_url)[0] == 1, 30, what="message in the DLQ")
    assert worker.events("invalid message left for the DLQ")
    assert worker.process.poll() is None


# --- 2. claims: duplicates and redeliveries --------------------------------------------


def test_same_job_delivered_to_two_workers_runs_once(stack: StepStack, spawn, tmp_path: Path) -> None:
    stack.put("uploads/dup.png", png())
    body = router_message(stack, "uploads/dup.png")
    stack.send(body)
    stack.send(body)
    log = tmp_path / "runs.txt"
    env = stack.worker_env(STEP, PROCESSOR=SLOW, PROCESSOR_OPTIONS=json.dumps({"seconds": 3, "runs_file": str(log)}))
    first, second = spawn(env), spawn(env)
    wait_state(stack, "uploads/dup.png", "done")
    wait_for(lambda: drained(stack), 30, what="both messages deleted")  # a worker started on a loaded machine can take seconds
    assert len(runs(log)) == 1
    assert job(stack, "uploads/dup.png")["steps"][STEP]["attempts"] == 1
    skipped = first.events("step not claimed") + second.events("step not claimed")
    assert [entry["reason"] for entry in skipped] == ["held-by-other-message"]


def test_redelivered_message_of_a_done_step_is_deleted_without_rework(stack: StepStack, spawn, tmp_path: Path) -> None:
    stack.put("uploads/again.png", png())
    body = router_message(stack, "uploads/again.png")
    log = tmp_path / "runs.txt"
    env = stack.worker_env(STEP, PROCESSOR=SLOW, PROCESSOR_OPTIONS=json.dumps({"runs_file": str(log)}))
    stack.send(body)
    worker = spawn(env)
    wait_state(stack, "uploads/again.png", "done")
    stack.send(body)
    wait_for(lambda: worker.events("step not claimed"), 15, what="redelivery seen")
    wait_for(lambda: drained(stack), 10, what="redelivery deleted")
    assert worker.events("step not claimed")[0]["reason"] == "finished"
    assert len(runs(log)) == 1


# --- 3. heartbeat and task protection --------------------------------------------------


def test_job_longer_than_the_visibility_timeout_is_not_taken_by_a_second_worker(moto_endpoint: str, spawn, tmp_path: Path) -> None:
    stack = StepStack.create(moto_endpoint, visibility_timeout=3)
    stack.put("uploads/long.png", png())
    stack.send(stack.s3_event("uploads/long.png"))
    log = tmp_path / "runs.txt"
    env = stack.worker_env(STEP, PROCESSOR=SLOW, PROCESSOR_OPTIONS=json.dumps({"seconds": 9, "runs_file": str(log)}), HEARTBEAT_SECONDS=1)
    spawn(env), spawn(env)
    item = wait_state(stack, "uploads/long.png", "done", timeout=40)
    wait_for(lambda: drained(stack), 10, what="queue drained")
    assert len(runs(log)) == 1, "a second worker picked up the message while the first still worked on it"
    assert item["steps"][STEP]["attempts"] == 1
    assert stack.counts(stack.dlq_url) == (0, 0)


def test_task_protection_is_on_while_busy_and_off_when_idle(stack: StepStack, spawn) -> None:
    stack.put("uploads/protect.png", png())
    agent = AgentServer()
    try:
        stack.send(stack.s3_event("uploads/protect.png"))
        spawn(stack.worker_env(STEP, ECS_AGENT_URI=agent.uri("task-1"), PROCESSOR=SLOW, PROCESSOR_OPTIONS='{"seconds": 1}'))
        wait_state(stack, "uploads/protect.png", "done")
        wait_for(lambda: len(agent.requests) >= 2, 15, what="protection turned off")
    finally:
        agent.close()
    assert agent.requests[0] == {"path": "/tasks/task-1/task-protection/v1/state", "ProtectionEnabled": True, "ExpiresInMinutes": 60}
    assert agent.requests[1] == {"path": "/tasks/task-1/task-protection/v1/state", "ProtectionEnabled": False}


# --- 4. crash safety -------------------------------------------------------------------


def test_worker_killed_mid_job_then_restarted_finishes_the_job_exactly_once(moto_endpoint: str, spawn, tmp_path: Path) -> None:
    stack = StepStack.create(moto_endpoint, visibility_timeout=4)
    stack.put("uploads/kill me.png", png())
    stack.send(stack.s3_event("uploads/kill me.png"))
    log = tmp_path / "runs.txt"
    env = stack.worker_env(STEP, PROCESSOR=SLOW, PROCESSOR_OPTIONS=json.dumps({"seconds": 3, "runs_file": str(log)}), HEARTBEAT_SECONDS=1)
    victim = spawn(env, "victim")
    wait_for(lambda: runs(log), 20, what="the first attempt to start")
    victim.signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    assert step_state(stack, "uploads/kill me.png") == "running"
    survivor = spawn(env, "survivor")
    item = wait_state(stack, "uploads/kill me.png", "done", timeout=40)
    wait_for(lambda: drained(stack), 10, what="queue drained")
    assert [attempt for _, attempt, _ in runs(log)] == ["1", "2"]
    assert item["steps"][STEP]["attempts"] == 2
    assert len(survivor.events("step done")) == 1
    assert stack.committed_result(item, STEP)["attempt"] == 2
    assert stack.counts(stack.dlq_url) == (0, 0)


def test_sigterm_lets_a_job_that_fits_the_grace_period_finish(stack: StepStack, spawn, tmp_path: Path) -> None:
    stack.put("uploads/finish.png", png())
    stack.send(stack.s3_event("uploads/finish.png"))
    log = tmp_path / "runs.txt"
    worker = spawn(stack.worker_env(STEP, PROCESSOR=SLOW, PROCESSOR_OPTIONS=json.dumps({"seconds": 2, "runs_file": str(log)})))
    wait_for(lambda: runs(log), 20, what="job to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    assert step_state(stack, "uploads/finish.png") == "done"
    assert drained(stack)


def test_sigterm_past_the_grace_period_gives_the_job_back(stack: StepStack, spawn, tmp_path: Path) -> None:
    stack.put("uploads/handback.png", png())
    stack.send(stack.s3_event("uploads/handback.png"))
    log = tmp_path / "runs.txt"
    slow = json.dumps({"seconds": 30, "runs_file": str(log)})
    worker = spawn(stack.worker_env(STEP, PROCESSOR=SLOW, PROCESSOR_OPTIONS=slow, GRACE_SECONDS=1))
    wait_for(lambda: runs(log), 20, what="job to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
    item = job(stack, "uploads/handback.png")
    assert item["steps"][STEP]["state"] == "pending"
    assert stack.counts() == (1, 0), "the message should be visible again at once"
    assert worker.events("step released on shutdown")
    spawn(stack.worker_env(STEP))  # a fresh worker (fast processor) completes it
    wait_state(stack, "uploads/handback.png", "done")


# --- 5. errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [(NOT_MEDIA, "not a supported image or video"), (EMPTY, "empty file (0 bytes)"), (png(64, 64), "over the limit of 100")],
)
def test_permanent_failure_marks_the_job_failed_and_deletes_the_message(stack: StepStack, spawn, body: bytes, reason: str) -> None:
    stack.put("uploads/bad input.png", body)
    stack.put("uploads/good.png", png())
    stack.send(stack.s3_event("uploads/bad input.png", "uploads/good.png"))
    spawn(stack.worker_env(STEP, MAX_FILE_BYTES=100))
    item = wait_state(stack, "uploads/bad input.png", "failed")
    assert item["status"] == "failed"
    assert reason in item["steps"][STEP]["error"]
    assert wait_state(stack, "uploads/good.png", "done")["status"] == "succeeded"
    wait_for(lambda: drained(stack), 10, what="message deleted")
    assert stack.counts(stack.dlq_url) == (0, 0)


def test_transient_failure_is_retried_and_then_succeeds(stack: StepStack, spawn) -> None:
    stack.put("uploads/flaky.png", png())
    stack.send(stack.s3_event("uploads/flaky.png"))
    worker = spawn(stack.worker_env(STEP, PROCESSOR=FLAKY, PROCESSOR_OPTIONS='{"succeed_on_attempt": 2}'))
    item = wait_state(stack, "uploads/flaky.png", "done")
    assert item["steps"][STEP]["attempts"] == 2
    assert item["steps"][STEP]["error"] == "TransientError: simulated throttling on attempt 1"
    assert [entry["outcome"] for entry in worker.events("step failed")] == ["retry"]
    wait_for(lambda: drained(stack), 10, what="message deleted")


def test_transient_failure_on_every_attempt_fails_the_job_after_max_attempts(stack: StepStack, spawn) -> None:
    stack.put("uploads/doomed.png", png())
    stack.send(stack.s3_event("uploads/doomed.png"))
    spawn(stack.worker_env(STEP, PROCESSOR=FLAKY, MAX_ATTEMPTS=3))
    item = wait_state(stack, "uploads/doomed.png", "failed")
    assert item["status"] == "failed"
    assert item["steps"][STEP]["error"] == "gave up after 3 attempts: TransientError: simulated throttling on attempt 3"
    assert item["steps"][STEP]["failures"] == 2  # counted before the last attempt, which failed the step
    wait_for(lambda: drained(stack), 10, what="message deleted")
    assert stack.counts(stack.dlq_url) == (0, 0), "retries are requeued copies: they never use up the DLQ's receives"
