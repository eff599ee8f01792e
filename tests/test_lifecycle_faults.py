"""The job lifecycle under the faults AWS has and moto hides: real ``python -m worker`` processes, moto, and a fault proxy.

Each test names the point of the lifecycle it holds (docs/job-lifecycle.md lists them). Where moto is
kinder than AWS, the proxy (tests/support/faultproxy.py) puts AWS's behaviour back: throttling, a
refused visibility change, a stale receipt handle, a slow lease write.
"""

from __future__ import annotations

import hashlib
import json
import signal
import time
from pathlib import Path

import pytest

from pipeline_core.jobs import ObjectRef, WorkMessage
from pipeline_core.jobstore import JobStore
from tests.support import deadletters
from tests.support.aws import StepStack
from tests.support.faultproxy import FaultProxy
from tests.support.items import raw_job
from tests.support.media import png, png_bomb
from tests.support.workers import wait_for

pytestmark = pytest.mark.workers

STEP = "detect"


@pytest.fixture(autouse=True, params=[1, 4], ids=["concurrency-1", "concurrency-4"])
def concurrency(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """The whole suite runs with one message in flight per worker, and with four."""
    monkeypatch.setattr(StepStack, "concurrency", request.param)
    return request.param


SLOW = "tests.support.plugins:SlowProcessor"
FLAKY = "tests.support.plugins:FlakyProcessor"
HANGING = "tests.support.plugins:HangingProcessor"


def runs(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def state(stack: StepStack, key: str) -> str | None:
    return stack.job(key).get("steps", {}).get(STEP, {}).get("state")


def wait_state(stack: StepStack, key: str, wanted: str, timeout: float = 40) -> dict:
    wait_for(lambda: state(stack, key) == wanted, timeout, what=f"{key} {wanted}")
    return stack.job(key)


def drained(stack: StepStack) -> bool:
    return stack.counts() == (0, 0)


# --- hand-backs do not use up the retry budget ---------------------------------------------------------


def test_repeated_sigterm_hand_backs_never_dead_letter_the_message(moto_endpoint: str, spawn, tmp_path: Path) -> None:
    """Spot interruptions and deployments: more hand-backs than maxReceiveCount, and the job still finishes."""
    stack = StepStack.create(moto_endpoint, visibility_timeout=30, max_receive_count=2)
    stack.put("uploads/interrupted.png", png())
    stack.send(stack.s3_event("uploads/interrupted.png"))
    log = tmp_path / "runs.txt"
    slow = stack.worker_env(STEP, PROCESSOR=SLOW, PROCESSOR_OPTIONS=json.dumps({"seconds": 30, "runs_file": str(log)}), GRACE_SECONDS=0.5)
    for round_ in range(1, 4):
        worker = spawn(slow, f"interrupted-{round_}")
        wait_for(lambda n=round_: len(runs(log)) == n, 30, what=f"attempt {round_} to start")
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0
        assert state(stack, "uploads/interrupted.png") == "pending"
    assert stack.counts(stack.dlq_url) == (0, 0), "a hand-back used up a receive: the message was dead-lettered"
    spawn(stack.worker_env(STEP), "finisher")
    item = wait_state(stack, "uploads/interrupted.png", "done")
    assert item["status"] == "succeeded" and item["steps"][STEP]["failures"] == 0


# --- a late heartbeat cannot hold back a retry --------------------------------------------------------------


def test_a_slow_lease_write_landing_after_a_transient_error_does_not_postpone_the_retry(
    moto_endpoint: str, proxy: FaultProxy, spawn
) -> None:
    stack = StepStack.create(moto_endpoint, visibility_timeout=20, max_receive_count=3)
    stack.put("uploads/flaky.png", png())
    stack.send(stack.s3_event("uploads/flaky.png"))
    # Every lease extension takes a second, as a throttled DynamoDB write would: one is in flight when the step fails.
    proxy.add("UpdateItem", body_contains="lease_expires_at = :lease", delay=1.0)
    options = json.dumps({"succeed_on_attempt": 2, "seconds": 1.2})
    worker = spawn(stack.worker_env(STEP, AWS_ENDPOINT_URL=proxy.url, PROCESSOR=FLAKY, PROCESSOR_OPTIONS=options, HEARTBEAT_SECONDS=0.5))
    started = time.monotonic()
    item = wait_state(stack, "uploads/flaky.png", "done", timeout=30)
    assert item["steps"][STEP]["attempts"] == 2
    assert not worker.events("message came back while its step is held; postponed")
    assert time.monotonic() - started < 15, "the retry waited for a lease a late heartbeat had pushed out"


# --- exactly the right bytes ------------------------------------------------------------------------------


def test_each_job_reads_its_own_object_version_and_writes_where_no_other_version_does(stack: StepStack, spawn) -> None:
    s3 = stack.aws["s3"]
    s3.put_bucket_versioning(Bucket=stack.bucket, VersioningConfiguration={"Status": "Enabled"})
    v1_bytes, v2_bytes = png(8, 8, (1, 2, 3)), png(16, 16, (4, 5, 6))
    v1 = stack.put("uploads/same name.png", v1_bytes)["VersionId"]
    first_event = stack.s3_event("uploads/same name.png")
    v2 = stack.put("uploads/same name.png", v2_bytes)["VersionId"]
    stack.send(first_event)
    stack.send(stack.s3_event("uploads/same name.png"))
    spawn(stack.worker_env(STEP))
    store = JobStore(stack.table)
    jobs = {}
    for version, body in ((v1, v1_bytes), (v2, v2_bytes)):
        job_id = ObjectRef(stack.bucket, "uploads/same name.png", version, versioned=True).job_id
        jobs[version] = wait_for(
            lambda j=job_id: (raw_job(store, j) or {}).get("status") == "succeeded" and raw_job(store, j), 30, what="job"
        )
        result = stack.committed_result(jobs[version], STEP)
        assert result["input"]["version_id"] == version
        assert result["output"]["sha256"] == hashlib.sha256(body).hexdigest(), "the job processed another version's bytes"
    assert jobs[v1]["steps"][STEP]["result_file"] != jobs[v2]["steps"][STEP]["result_file"]


def test_an_overwritten_object_fails_its_old_job_permanently_when_the_bucket_is_unversioned(stack: StepStack, spawn) -> None:
    stack.put("uploads/replaced.png", png(8, 8))
    old_event = stack.s3_event("uploads/replaced.png")
    stack.put("uploads/replaced.png", png(9, 9))
    stack.send(old_event)
    spawn(stack.worker_env(STEP))
    old_job = ObjectRef(stack.bucket, "uploads/replaced.png", old_event["Records"][0]["s3"]["object"]["eTag"]).job_id
    store = JobStore(stack.table)
    item = wait_for(
        lambda: (raw_job(store, old_job) or {}).get("status") == "failed" and raw_job(store, old_job), 30, what="old job failed"
    )
    assert "was overwritten after this job was made" in item["steps"][STEP]["error"]


# --- fencing: a stale worker never overwrites a committed result --------------------------------------------------


def test_a_paused_worker_that_lost_its_claim_never_touches_the_committed_result(moto_endpoint: str, spawn, tmp_path: Path) -> None:
    stack = StepStack.create(moto_endpoint, visibility_timeout=3)
    stack.put("uploads/paused.png", png())
    stack.send(stack.s3_event("uploads/paused.png"))
    log = tmp_path / "runs.txt"
    slow = json.dumps({"seconds": 4, "runs_file": str(log)})
    stale = spawn(stack.worker_env(STEP, PROCESSOR=SLOW, PROCESSOR_OPTIONS=slow, HEARTBEAT_SECONDS=1), "stale")
    wait_for(lambda: runs(log), 20, what="attempt 1 to start")
    stale.signal(signal.SIGSTOP)
    fresh = spawn(stack.worker_env(STEP, PROCESSOR=SLOW, PROCESSOR_OPTIONS=json.dumps({"runs_file": str(log)})), "fresh")
    item = wait_state(stack, "uploads/paused.png", "done", timeout=30)
    assert item["steps"][STEP]["attempts"] == 2
    committed = stack.committed_result(item, STEP)
    stale.signal(signal.SIGCONT)
    wait_for(
        lambda: stale.events("claim lost; the new holder repeats the step and this attempt wrote nothing it records"),
        20,
        what="A to see it lost",
    )
    after = stack.job("uploads/paused.png")
    assert after["steps"][STEP]["result_file"] == item["steps"][STEP]["result_file"]
    assert stack.committed_result(after, STEP) == committed
    assert committed["attempt"] == 2
    assert fresh.events("step done") and not stale.events("step done")


# --- bounded steps ------------------------------------------------------------------------------------------------


def test_a_hung_processor_fails_its_attempt_frees_the_task_and_the_retry_succeeds(stack: StepStack, spawn) -> None:
    stack.put("uploads/wedged.png", png())
    stack.send(stack.s3_event("uploads/wedged.png"))
    env = stack.worker_env(STEP, PROCESSOR=HANGING, STEP_TIMEOUT_SECONDS=2)
    hung = spawn(env, "hung")
    assert hung.wait(timeout=30) == 0, "the worker should exit so that ECS replaces the task"
    [failure] = hung.events("step failed")
    assert (failure["outcome"], failure["reason"]) == ("retry", "StepTimedOut: step timed out after 2 s")
    assert state(stack, "uploads/wedged.png") == "pending"
    spawn(env, "replacement")
    item = wait_state(stack, "uploads/wedged.png", "done")
    assert (item["steps"][STEP]["attempts"], item["steps"][STEP]["failures"]) == (2, 1)


def test_a_refused_visibility_extension_still_extends_the_lease_so_no_one_reruns_the_step(
    moto_endpoint: str, proxy: FaultProxy, spawn, tmp_path: Path
) -> None:
    """AWS refuses visibility past 12 hours from the receive (moto counts from the send): the lease must still move."""
    stack = StepStack.create(moto_endpoint, visibility_timeout=3)
    stack.put("uploads/long.png", png())
    stack.send(stack.s3_event("uploads/long.png"))
    message = "Total VisibilityTimeout for the message is beyond the limit [43200 seconds]"
    proxy.add("ChangeMessageVisibility", "ChangeMessageVisibilityBatch", error=(400, "InvalidParameterValue", message))
    log = tmp_path / "runs.txt"
    env = stack.worker_env(
        STEP,
        AWS_ENDPOINT_URL=proxy.url,
        PROCESSOR=SLOW,
        PROCESSOR_OPTIONS=json.dumps({"seconds": 8, "runs_file": str(log)}),
        HEARTBEAT_SECONDS=1,
    )
    spawn(env, "a"), spawn(env, "b")
    item = wait_state(stack, "uploads/long.png", "done", timeout=40)
    assert len(runs(log)) == 1, "the step ran twice: a failed visibility change skipped the lease extension"
    assert item["steps"][STEP]["attempts"] == 1


# --- the worker survives AWS ----------------------------------------------------------------------------------------


def test_throttled_receives_and_stale_receipt_handles_do_not_stop_the_worker(stack: StepStack, proxy: FaultProxy, spawn) -> None:
    proxy.add("ReceiveMessage", error=(400, "ThrottlingException", "Rate exceeded"), times=6)
    proxy.add("DeleteMessageBatch", fail_entries=("ReceiptHandleIsInvalid", "The receipt handle has expired"), times=1)
    # Two tries per call (botocore's AWS_MAX_ATTEMPTS), so the throttling outlasts botocore's retries and reaches the loop.
    worker = spawn(stack.worker_env(STEP, AWS_ENDPOINT_URL=proxy.url, AWS_MAX_ATTEMPTS=2))
    wait_for(lambda: worker.events("receive failed; backing off"), 30, what="a throttled receive")
    stack.put("uploads/after throttling.png", png())
    stack.send(stack.s3_event("uploads/after throttling.png"))
    wait_state(stack, "uploads/after throttling.png", "done", timeout=60)
    wait_for(lambda: worker.events("message not deleted; it had already left the queue"), 10, what="the stale handle to be reported")
    stack.put("uploads/next.png", png())
    stack.send(stack.s3_event("uploads/next.png"))
    wait_state(stack, "uploads/next.png", "done")
    assert worker.process.poll() is None


def test_a_delete_refused_in_a_batch_brings_only_that_message_back_and_it_is_dropped_as_finished(
    moto_endpoint: str, proxy: FaultProxy, spawn, tmp_path: Path
) -> None:
    """SQS answers DeleteMessageBatch entry by entry: a failed entry is not deleted (the others are), comes back
    after its visibility timeout, and its claim's refusal (done) settles it; nothing runs twice."""
    stack = StepStack.create(moto_endpoint, visibility_timeout=3)
    keys = [f"uploads/batch-{index}.png" for index in range(4)]
    for key in keys:
        stack.put(key, png())
    entries = [{"Id": str(index), "MessageBody": json.dumps(stack.s3_event(key))} for index, key in enumerate(keys)]
    stack.aws["sqs"].send_message_batch(QueueUrl=stack.queue_url, Entries=entries)
    proxy.add("DeleteMessageBatch", fail_entries=("InternalError", "We encountered an internal error. Please try again."), times=1)
    log = tmp_path / "runs.txt"
    options = json.dumps({"seconds": 0, "runs_file": str(log)})
    worker = spawn(stack.worker_env(STEP, AWS_ENDPOINT_URL=proxy.url, PROCESSOR=SLOW, PROCESSOR_OPTIONS=options))
    for key in keys:
        wait_state(stack, key, "done")
    refused = wait_for(lambda: worker.events("message not deleted; it comes back and is dropped as finished"), 20, what="the refused entry")
    assert len(refused) == 1 and refused[0]["code"] == "InternalError"
    wait_for(lambda: drained(stack), 30, what="the refused message to come back and be dropped")
    assert [entry["reason"] for entry in worker.events("step not claimed")] == ["finished"]
    assert len(runs(log)) == len(keys), "a step ran twice"
    assert proxy.calls["DeleteMessage"] == 0, "deletes went one by one"


def test_a_visibility_change_refused_in_a_batch_stops_only_that_message_being_extended(
    moto_endpoint: str, proxy: FaultProxy, spawn, tmp_path: Path
) -> None:
    """ChangeMessageVisibilityBatch answers entry by entry: the entry refused as gone is no longer extended (here
    moto still has it, so it comes back to a second worker, which postpones it: its lease is held), and the other
    message of the same beat keeps its visibility; both steps finish, once each."""
    stack = StepStack.create(moto_endpoint, visibility_timeout=4)
    keys = ["uploads/held-a.png", "uploads/held-b.png"]
    for key in keys:
        stack.put(key, png())
        stack.send(stack.s3_event(key))
    proxy.add("ChangeMessageVisibilityBatch", fail_entries=("ReceiptHandleIsInvalid", "The receipt handle has expired"), times=1)
    log = tmp_path / "runs.txt"
    options = json.dumps({"seconds": 8, "runs_file": str(log)})
    env = stack.worker_env(STEP, AWS_ENDPOINT_URL=proxy.url, PROCESSOR=SLOW, PROCESSOR_OPTIONS=options, HEARTBEAT_SECONDS=1, CONCURRENCY=2)
    holder = spawn(env, "holder")
    wait_for(lambda: len(holder.events("step claimed")) == 2, 20, what="both steps claimed by one worker")
    other = spawn(stack.worker_env(STEP, PROCESSOR=SLOW, PROCESSOR_OPTIONS=options), "other")
    for key in keys:
        wait_state(stack, key, "done", timeout=60)
    assert [entry["code"] for entry in holder.events("visibility extension refused")] == ["ReceiptHandleIsInvalid"]
    came_back = {entry["key"] for entry in other.events("message came back while its step is held; postponed")}
    assert len(came_back) <= 1, f"both messages came back: the refused entry stopped the other's extension ({came_back})"
    assert len(runs(log)) == len(keys), "a step ran twice"
    assert proxy.calls["ChangeMessageVisibility"] == 0


def test_a_step_message_with_an_empty_job_id_goes_the_dlq_path_and_the_worker_carries_on(stack: StepStack, spawn) -> None:
    stack.put("uploads/named.png", png())
    obj = stack.object_ref("uploads/named.png")
    body = json.loads(WorkMessage.for_job(obj, STEP).to_body()) | {"job_id": ""}
    stack.send(body)
    stack.send(stack.s3_event("uploads/named.png"))
    worker = spawn(stack.worker_env(STEP))
    wait_state(stack, "uploads/named.png", "done")
    assert worker.events("invalid message left for the DLQ")[0]["reason"] == "step message lacks job_id"
    assert worker.process.poll() is None


# --- failed steps, bad inputs ----------------------------------------------------------------------------------------


def test_a_redriven_message_for_a_failed_step_is_reported_not_dropped_silently(stack: StepStack, spawn) -> None:
    stack.put("uploads/broken.png", b"not an image at all")
    event = stack.s3_event("uploads/broken.png")
    stack.send(event)
    worker = spawn(stack.worker_env(STEP))
    wait_state(stack, "uploads/broken.png", "failed")
    stack.send(event)  # what a DLQ redrive of that message would deliver
    [report] = wait_for(lambda: worker.events("message for a failed step ignored: run `gpupipe retry` to run it again"), 20, what="report")
    assert report["error"].startswith("PermanentError: not a supported image or video")
    assert report["level"] == "warning"


def test_a_decompression_bomb_is_refused_from_its_header(stack: StepStack, spawn) -> None:
    stack.put("uploads/bomb.png", png_bomb())
    stack.send(stack.s3_event("uploads/bomb.png"))
    spawn(stack.worker_env(STEP))
    item = wait_state(stack, "uploads/bomb.png", "failed")
    assert item["steps"][STEP]["error"] == (
        "PermanentError: the png image is 20000x20000 = 400 megapixels, over the limit of 100 (processor option max_pixels)"
    )
    assert item["steps"][STEP]["failures"] == 0


def test_an_input_key_too_long_for_its_result_keys_fails_permanently_at_once(stack: StepStack, spawn) -> None:
    key = "uploads/" + "k" * 960 + ".png"  # a valid input key; its result keys would pass 1024 bytes
    stack.put(key, png())
    stack.send(stack.s3_event(key))
    spawn(stack.worker_env(STEP))
    item = wait_state(stack, key, "failed")
    assert item["steps"][STEP]["error"].startswith("PermanentError: input key is too long: its result keys would be")
    assert item["steps"][STEP]["attempts"] == 1


# --- a message that runs out of receives ends its job ------------------------------------------------------------


def test_a_worker_killed_on_every_receive_dead_letters_the_message_and_the_job_fails_with_the_reason(
    moto_endpoint: str, spawn, tmp_path: Path
) -> None:
    """Out-of-memory kills or host losses on every receive: SQS dead-letters the message, and the consumer ends the job."""
    stack = StepStack.create(moto_endpoint, visibility_timeout=2, max_receive_count=2)
    stack.put("uploads/oom.png", png())
    stack.send(stack.s3_event("uploads/oom.png"))
    log = tmp_path / "runs.txt"
    env = stack.worker_env(STEP, PROCESSOR=SLOW, PROCESSOR_OPTIONS=json.dumps({"seconds": 60, "runs_file": str(log)}), HEARTBEAT_SECONDS=1)
    for receive in range(1, stack.max_receive_count + 1):
        worker = spawn(env, f"killed-{receive}")
        wait_for(lambda n=receive: len(runs(log)) == n, 30, what=f"receive {receive} to start its step")
        worker.signal(signal.SIGKILL)
        worker.wait()
    # The next receive by any worker finds the message over maxReceiveCount, and SQS moves it to the DLQ.
    spawn(stack.worker_env(STEP), "next")
    with deadletters.configured(stack, STEP):
        wait_for(lambda: deadletters.pump(stack), 30, what="the message in the DLQ")
    item = stack.job("uploads/oom.png")
    assert item["status"] == "failed"
    assert item["steps"][STEP]["error"] == f"moved to the dead-letter queue after {stack.max_receive_count} receives"
    assert stack.counts() == (0, 0) and stack.counts(stack.dlq_url) == (0, 0)


def test_attempts_that_end_with_no_answer_spend_the_retry_budget_even_when_the_dlq_never_sees_them(
    moto_endpoint: str, spawn, tmp_path: Path
) -> None:
    """A file that kills its worker every time: redeliveries that come back while the dead attempt's lease
    still runs are postponed as fresh copies, which SQS counts from zero, so the DLQ may never see the
    loop. The job item counts each attempt taken over from a dead one: the job fails after MAX_ATTEMPTS."""
    stack = StepStack.create(moto_endpoint, visibility_timeout=2, max_receive_count=100, max_attempts=3)
    stack.put("uploads/crasher.png", png())
    stack.send(stack.s3_event("uploads/crasher.png"))
    log = tmp_path / "runs.txt"
    env = stack.worker_env(STEP, PROCESSOR=SLOW, PROCESSOR_OPTIONS=json.dumps({"seconds": 60, "runs_file": str(log)}), HEARTBEAT_SECONDS=1)
    for attempt in range(1, 4):
        worker = spawn(env, f"killed-{attempt}")
        wait_for(lambda n=attempt: len(runs(log)) == n, 30, what=f"attempt {attempt} to start")
        worker.signal(signal.SIGKILL)
        worker.wait()
    spawn(env, "next")
    item = wait_for(lambda: (job := stack.job("uploads/crasher.png"))["status"] == "failed" and job, 40, what="the job to fail")
    error = item["steps"][STEP]["error"]
    assert error.startswith("gave up after 3 attempts: ") and "stopped answering" in error, error
    assert len(runs(log)) == 3, "the attempt after the budget was spent must not run the step"
    wait_for(lambda: stack.counts() == (0, 0), 20, what="the message to be settled")
