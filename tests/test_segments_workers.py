"""Long videos split, processed and merged by real ``python -m worker`` processes against moto, crashes included.

Each test checks the committed result against one pass of the same processor over the same video.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import jsonschema
import pytest

from pipeline_core.jobs import WorkMessage
from tests.support.aws import StepStack
from tests.support.faultproxy import FaultProxy
from tests.support.workers import wait_for
from tools.sample_media import long_video
from worker.detection.engine import DetectionProcessor
from worker.processing import StepContext

pytestmark = pytest.mark.workers

STEP = "detect"
SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "worker" / "result.schema.json").read_text())
KEY = "uploads/long.avi"
SECONDS, FPS, SEGMENT_SECONDS = 40, 10, 10  # four segments of 10 s


def options(seconds_per_frame: float = 0.0) -> dict:
    square = {"name": "tests.support.plugins:SquareDetector", "seconds_per_frame": seconds_per_frame}
    return {"detectors": [square], "sample_fps": 1.5, "contact_sheet_frames": 6}


def env(stack: StepStack, seconds_per_frame: float = 0.0, **overrides: object) -> dict[str, str]:
    return stack.worker_env(
        STEP,
        PROCESSOR="detect",
        PROCESSOR_OPTIONS=json.dumps(options(seconds_per_frame)),
        SEGMENT_SECONDS=SEGMENT_SECONDS,
        HEARTBEAT_SECONDS=1,
        **overrides,
    )


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return long_video(tmp_path / "long.avi", SECONDS, FPS)


def one_pass(path: Path, tmp_path: Path) -> dict:
    workdir = tmp_path / "one-pass"
    workdir.mkdir(exist_ok=True)
    return DetectionProcessor(options()).process(path, StepContext("j", STEP, "b", KEY, "v", 1, workdir)).document


def upload(stack: StepStack, path: Path) -> None:
    stack.put(KEY, path.read_bytes())
    stack.send(stack.s3_event(KEY))


def finished(stack: StepStack, timeout: float = 90) -> dict:
    return wait_for(lambda: stack.job(KEY).get("status") in ("succeeded", "failed") and stack.job(KEY), timeout, what="job to finish")


def assert_merged_equals_one_pass(stack: StepStack, job: dict, reference: dict) -> dict:
    assert job["status"] == "succeeded", job["steps"][STEP].get("error")
    result = stack.committed_result(job, STEP)
    jsonschema.validate(result, SCHEMA)
    output = result["output"]
    assert output["frames"] == reference["frames"]
    assert output["summary"] == reference["summary"]
    assert output["media"] == reference["media"] and output["sampling"] == reference["sampling"]
    assert [s["index"] for s in result["segments"]] == [0, 1, 2, 3]
    assert sorted(result["files"]) == ["contact-sheet.jpg", "timeline.png"]
    prefix = stack.committed_prefix(job, STEP)
    for name in result["files"]:
        assert stack.aws["s3"].head_object(Bucket=stack.bucket, Key=prefix + name)["ContentLength"] > 0
    return result


def segment_attempts(job: dict) -> list[int]:
    segments = job["steps"][STEP]["segments"]
    return [int(segments[str(i)]["attempts"]) for i in range(int(job["steps"][STEP]["segment_count"]))]


def events(workers: list, name: str) -> list[dict]:
    return [event for worker in workers for event in worker.events(name)]


def test_a_long_video_is_split_processed_by_several_workers_and_merged_into_the_one_pass_result(
    stack: StepStack, spawn, video: Path, tmp_path: Path
) -> None:
    upload(stack, video)
    workers = [spawn(env(stack, 0.05), f"w{n}") for n in range(3)]
    job = finished(stack)
    assert_merged_equals_one_pass(stack, job, one_pass(video, tmp_path))
    step = job["steps"][STEP]
    assert (step["segment_count"], step["segments_done"], step["attempts"]) == (4, 4, 2)  # the split, then the merge
    assert segment_attempts(job) == [1, 1, 1, 1]
    assert len({event["worker_id"] for event in events(workers, "segment done")}) >= 2, "one worker did every segment"
    assert len(events(workers, "merge done")) == 1
    assert wait_for(lambda: stack.counts() == (0, 0), 10, what="the queue to drain")
    # each segment read its input in ranged GETs (worker/ranged.py; tests/test_ranged_s3.py: a fraction of a larger file)
    reads = [segment["input_read"] for segment in stack.committed_result(job, STEP)["segments"]]
    assert all(read["requests"] >= 1 and 0 < read["bytes"] <= video.stat().st_size for read in reads), reads


def test_a_worker_killed_mid_segment_loses_only_that_segment_which_another_worker_redoes(
    moto_endpoint: str, spawn, video: Path, tmp_path: Path
) -> None:
    stack = StepStack.create(moto_endpoint, visibility_timeout=4)
    upload(stack, video)
    doomed = spawn(env(stack, 0.3), "doomed")
    [claimed] = wait_for(lambda: doomed.events("segment claimed")[:1], 40, what="a segment to start")
    doomed.signal(signal.SIGKILL)
    doomed.wait()
    survivors = [spawn(env(stack, 0.02), f"survivor-{n}") for n in range(2)]
    job = finished(stack)
    assert_merged_equals_one_pass(stack, job, one_pass(video, tmp_path))
    attempts = segment_attempts(job)
    assert attempts[claimed["segment"]] == 2 and sum(attempts) == 5, attempts
    assert len(events(survivors, "merge done")) == 1


def test_a_worker_with_room_for_many_messages_works_on_at_most_segments_in_flight_and_hands_on_the_rest(
    stack: StepStack, spawn, video: Path, tmp_path: Path
) -> None:
    # Four segment messages arrive at once at a worker that may hold four messages: it works on one segment
    # at a time (SEGMENTS_IN_FLIGHT=1) and hands the others on, leaving them for tasks with room.
    upload(stack, video)
    worker = spawn(env(stack, 0.2, CONCURRENCY=4, SEGMENTS_IN_FLIGHT=1), "alone")
    job = finished(stack)
    assert_merged_equals_one_pass(stack, job, one_pass(video, tmp_path))
    assert segment_attempts(job) == [1, 1, 1, 1]
    working = 0
    for entry in worker.logs():
        working += {"segment claimed": 1, "segment done": -1}.get(entry.get("event"), 0)
        assert working <= 1, "two segments were worked on at once"
    assert [e for e in worker.events("message requeued") if "handed on" in e["why"]], "no segment message was handed on"
    wait_for(lambda: stack.counts() == (0, 0), 20, what="every segment message to be settled")
    assert stack.aws["sqs"].receive_message(QueueUrl=stack.dlq_url, WaitTimeSeconds=0).get("Messages") is None


def test_duplicate_segment_messages_run_no_segment_twice_and_merge_once(stack: StepStack, spawn, video: Path, tmp_path: Path) -> None:
    upload(stack, video)
    workers = [spawn(env(stack, 0.1), f"w{n}") for n in range(2)]
    wait_for(lambda: stack.job(KEY).get("steps", {}).get(STEP, {}).get("segment_count"), 40, what="the split")
    base = WorkMessage.for_job(stack.object_ref(KEY), STEP)
    for index in range(4):
        stack.send(base.for_segment(index).to_body())
    job = finished(stack)
    assert_merged_equals_one_pass(stack, job, one_pass(video, tmp_path))
    assert segment_attempts(job) == [1, 1, 1, 1]
    merges = [
        {key: entry.get(key) for key in ("event", "worker_id", "message_id", "attempt", "error", "reason")}
        for worker in workers
        for entry in worker.logs()
        if entry.get("merge") or "claim lost" in str(entry.get("event"))
    ]
    assert len(events(workers, "merge done")) == 1 and job["steps"][STEP]["attempts"] == 2, (merges, job["steps"][STEP].get("error"))
    wait_for(lambda: stack.counts() == (0, 0), 20, what="the duplicates to be settled")
    assert len(events(workers, "step not claimed")) >= 4


def test_a_merging_worker_killed_before_it_marks_the_step_done_is_followed_by_a_merge_that_reprocesses_nothing(
    moto_endpoint: str, proxy: FaultProxy, spawn, video: Path, tmp_path: Path
) -> None:
    stack = StepStack.create(moto_endpoint, visibility_timeout=4)
    upload(stack, video)
    proxy.add("UpdateItem", body_contains="#result_file", delay=60.0)  # mark_done hangs: the worker dies in it
    merger = spawn(env(stack, AWS_ENDPOINT_URL=proxy.url), "merger")
    wait_for(lambda: merger.events("merge claimed"), 60, what="the merge to start")
    wait_for(lambda: any(k["Key"].endswith("result.json") for k in _merge_outputs(stack)), 20, what="the merged result to be written")
    merger.signal(signal.SIGKILL)
    merger.wait()
    assert stack.job(KEY)["steps"][STEP]["state"] == "running"
    second = spawn(env(stack), "second")
    job = finished(stack)
    result = assert_merged_equals_one_pass(stack, job, one_pass(video, tmp_path))
    assert segment_attempts(job) == [1, 1, 1, 1], "a segment was processed again"
    assert not second.events("segment claimed") and len(second.events("merge done")) == 1
    assert result["attempt"] == job["steps"][STEP]["attempts"] == 3


def _merge_outputs(stack: StepStack) -> list[dict]:
    listing = stack.aws["s3"].list_objects_v2(Bucket=stack.bucket, Prefix="results/").get("Contents", [])
    return [obj for obj in listing if f"/{STEP}/attempt-" in obj["Key"]]


def test_a_corrupt_range_in_the_middle_fails_the_job_naming_its_segment(stack: StepStack, spawn, tmp_path: Path) -> None:
    path = long_video(tmp_path / "corrupt.avi", SECONDS, FPS, red_between=(24, 26))  # inside segment 3 of 4: [20 s, 30 s)
    upload(stack, path)
    workers = [spawn(env(stack), f"w{n}") for n in range(2)]
    job = finished(stack)
    step = job["steps"][STEP]
    assert job["status"] == "failed"
    assert step["error"] == "segment 3/4 [20 s, 30 s): PermanentError: corrupt frame data"
    assert step["segments"]["2"]["state"] == "failed" and step["segments"]["2"]["failures"] == 0
    wait_for(lambda: stack.counts() == (0, 0), 20, what="every segment message to be settled")
    assert not events(workers, "merge claimed")


def test_gpupipe_retry_of_a_job_failed_by_a_segment_reruns_only_what_failed(
    stack: StepStack, spawn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gpupipe.cli import main

    path = long_video(tmp_path / "corrupt.avi", SECONDS, FPS, red_between=(24, 26))  # inside segment 3 of 4: [20 s, 30 s)
    upload(stack, path)
    workers = [spawn(env(stack), f"w{n}") for n in range(2)]
    before = finished(stack)
    assert before["status"] == "failed"
    wait_for(lambda: stack.counts() == (0, 0), 20, what="every segment message to be settled")
    before = stack.job(KEY)
    segments = before["steps"][STEP]["segments"]
    done = {key: (sub["attempts"], sub["result_file"]) for key, sub in segments.items() if sub["state"] == "done"}
    undone = sorted(key for key, sub in segments.items() if sub["state"] != "done")
    assert "2" in undone and done, segments

    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.endpoint)
    outputs = tmp_path / "stack.json"
    names = {"bucket_name": stack.bucket, "input_prefix": "uploads/", "results_prefix": "results/", "jobs_table_name": stack.table_name}
    outputs.write_text(json.dumps(names))
    assert main(["--outputs", str(outputs), "retry", "long.avi"]) == 0
    assert "step detect (was: segment 3/4 [20 s, 30 s): PermanentError: corrupt frame data)" in capsys.readouterr().out
    retried = stack.job(KEY)["steps"][STEP]
    assert retried["state"] == "pending" and retried["segments_done"] == len(done)
    for key in undone:  # back to pending with a fresh budget and no message: the step's message re-sends them
        sub = retried["segments"][key]
        assert sub["state"] == "pending" and sub["failures"] == 0 and "message_id" not in sub and "error" not in sub, sub
    stack.send(WorkMessage.for_job(stack.object_ref(KEY), STEP).to_body())  # what the router sends on failed -> pending

    attempts_before = int(segments["2"]["attempts"])
    job = wait_for(
        lambda: (j := stack.job(KEY))["status"] == "failed" and int(j["steps"][STEP]["segments"]["2"]["attempts"]) > attempts_before and j,
        90,
        what="the retried segment to run and fail again",
    )
    step = job["steps"][STEP]
    assert step["error"] == "segment 3/4 [20 s, 30 s): PermanentError: corrupt frame data"
    assert {key: (step["segments"][key]["attempts"], step["segments"][key]["result_file"]) for key in done} == done  # not redone
    wait_for(lambda: stack.counts() == (0, 0), 20, what="every segment message to be settled")
    assert not events(workers, "merge claimed")


def test_s3_errors_in_the_middle_of_segments_ranged_reads_retry_the_segment_and_the_merge_still_equals_one_pass(
    moto_endpoint: str, proxy: FaultProxy, spawn, tmp_path: Path
) -> None:
    """A throttled or failing ranged GET met inside the decoder (which sees it as the end of the file) must retry
    the segment, never commit it with fewer frames: botocore's own retries off, so each fault reaches the reader."""
    from tools.sample_media import clip

    path = clip(tmp_path / "long.avi", seconds=SECONDS, fps=FPS, size=(160, 120), bit_rate=400_000, keyframe_every=10)
    assert path.stat().st_size > 1_000_000  # each segment needs several ranged GETs after its header
    stack = StepStack.create(moto_endpoint, max_receive_count=30, max_attempts=30)
    upload(stack, path)
    # One worker, one file at a time: GET 1 is the step's (the whole file), then each segment's header, the AVI's
    # index at the end (the probe) and one or two windows the frame reader asks for. GET 4 and GET 8 are inside a
    # decoder; then every fifth GET fails, wherever it lands.
    throttled = (503, "SlowDown", "Please reduce your request rate.")
    where = f"/{stack.bucket}/{KEY}"
    proxy.add("S3.GET", path_contains=where, after=3, times=1, error=throttled)
    proxy.add("S3.GET", path_contains=where, after=6, times=1, error=throttled)
    proxy.add("S3.GET", path_contains=where, after=9, probability=0.2, error=throttled)
    workers = [spawn(env(stack, AWS_ENDPOINT_URL=proxy.url, AWS_MAX_ATTEMPTS=1, CONCURRENCY=1), "w")]
    job = finished(stack, timeout=180)
    assert_merged_equals_one_pass(stack, job, one_pass(path, tmp_path))
    retried = [event for event in events(workers, "step failed") if "SlowDown" in str(event.get("reason"))]
    assert proxy.faults["S3.GET"] >= 2 and retried and sum(segment_attempts(job)) > 4, (proxy.faults, segment_attempts(job))
    assert all(event.get("outcome") == "retry" for event in retried), retried
