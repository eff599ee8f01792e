"""Randomized soak of the job lifecycle: real workers, moto behind a fault proxy, chaos, and the dead-letter consumer.

A few hundred small images go through 2-3 ``python -m worker`` processes of one step (``detect``, a slow
media-info), and a handful of short videos through the workers of a second step beside it (``video``: the
``detect`` processor with the tests' cheap square detector, ``SEGMENT_SECONDS`` = 5, so each video is split
into segments that different workers process, and merged). A chaos thread SIGKILLs workers of both steps,
SIGSTOPs them past their lease (then SIGCONTs), and SIGTERMs them, supervisors keep the worker counts up,
and the proxy randomly throttles, fails (5xx) or slows AWS calls. Both steps' dead-letter queues are
drained into the real dead-letter handler, as their event source mappings would.

One more video is the retry drill: the proxy answers AccessDenied to every read of it after the first two (the
split's and one segment's), so its other segments spend their attempts and the job fails with a reason, as it
would with a bucket policy or KMS grant that lets part of the fleet through. The soak then removes the cause,
runs the real ``gpupipe retry`` on it, sends what the router sends for that change (``stream_router.routing``),
and checks that the job then succeeds with the single pass's result, the segment done before the retry kept.

At the end it prints jobs submitted / succeeded / failed / stuck / wrong-bytes / worker crashes, the
split videos' figures (submitted, succeeded, failed, stuck, segments, merges, merged = single pass,
mismatches) and the retry's, and exits non-zero unless stuck = 0, wrong-bytes = 0, mismatches = 0,
crashes = 0 and the retried job recovered. Wrong bytes: a succeeded image job whose committed
``result.json`` does not hold the hash of the bytes uploaded for it, or not the attempt its ``result_file``
names. A mismatch: a succeeded video whose merged result differs from one in-process pass of the same
processor over the same file in anything a user reads (the output document but its timings, and the
pictures list), or that was not split (fewer than 2 segments). A crash: a worker exit that is non-zero and
not caused by a signal.

Run: ``make soak`` (``SOAK_ARGS="--jobs 300 --videos 6 --seed 7"``); ``tests/test_soak.py`` runs a short smoke.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import logging
import os
import random
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local_runtime.emulator import Emulator
from pipeline_core.jobs import WorkMessage, split_s3_uri
from pipeline_core.jobstore import JobStore
from stream_router.routing import Enqueue, route
from tests.support import deadletters
from tests.support.aws import CREDENTIALS, StepStack
from tests.support.faultproxy import FaultProxy, Rule
from tests.support.media import png
from tests.support.workers import WorkerProcess

STEP = "detect"
VIDEO_STEP = "video"
SEGMENT_SECONDS = 5  # pipeline_core.segment_plan.MIN_SEGMENT_SECONDS: as many segments as a short video allows
# The split videos: (seconds, fps, frame size). Lengths, rates and sizes differ, so their results differ.
VIDEOS = ((12, 10, (160, 120)), (17, 8, (192, 144)), (23, 10, (128, 96)), (14, 12, (160, 120)), (21, 6, (176, 132)), (26, 10, (144, 108)))
RETRY_VIDEO = (16, 10, (160, 120))
VIDEO_OPTIONS = {
    "detectors": [{"name": "tests.support.plugins:SquareDetector", "seconds_per_frame": 0.05}],
    "sample_fps": 2,
    "contact_sheet_frames": 6,
}
ENDED = ("succeeded", "failed")


@dataclass
class Figures:
    submitted: int = 0
    succeeded: int = 0
    failed: int = 0
    stuck: int = 0
    wrong_bytes: int = 0
    crashes: int = 0
    kills: int = 0
    pauses: int = 0
    terms: int = 0
    faults: int = 0
    dead_lettered: int = 0
    failure_reasons: dict[str, int] = field(default_factory=dict)
    videos: int = 0  # split videos submitted (the retry drill's included)
    videos_succeeded: int = 0
    videos_failed: int = 0
    videos_stuck: int = 0
    segments: int = 0  # segments of the succeeded videos
    merges: int = 0  # "merge done" in the video workers' logs
    merged_equal: int = 0  # succeeded videos whose merged result equals the single pass
    mismatches: int = 0  # succeeded videos whose merged result differs, or that were not split
    retry_drill: bool = False
    retried: int = 0  # jobs `gpupipe retry` put back to pending after they failed for the drill's cause
    recovered: int = 0  # of those, succeeded afterwards with the single pass's result
    retry_story: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        recovered = not self.retry_drill or self.retried == self.recovered == 1
        stuck = self.stuck + self.videos_stuck
        return stuck == 0 and self.wrong_bytes == 0 and self.mismatches == 0 and self.crashes == 0 and recovered


def inject_faults(proxy: FaultProxy, rate: float) -> None:
    """AWS's bad days, at ``rate`` of the calls each rule covers."""
    proxy.add(
        "UpdateItem", "GetItem", "PutItem", error=(400, "ProvisionedThroughputExceededException", "Throughput exceeded"), probability=rate
    )
    proxy.add("ReceiveMessage", "SendMessage", error=(400, "ThrottlingException", "Rate exceeded"), probability=rate)
    proxy.add(
        "ChangeMessageVisibilityBatch",
        "DeleteMessage",
        "DeleteMessageBatch",
        error=(500, "InternalError", "We encountered an internal error"),
        probability=rate,
    )
    # SQS's batch answers can fail some entries and not others (the worker deletes and extends in batches). One draw
    # per call is matched against the rules in turn: this one takes the next ``rate`` of the draws.
    entry = ("InternalError", "We encountered an internal error")
    proxy.add("ChangeMessageVisibilityBatch", "DeleteMessageBatch", fail_entries=entry, probability=2 * rate)
    proxy.add("S3.PUT", "S3.GET", "S3.HEAD", error=(503, "SlowDown", "Please reduce your request rate"), probability=rate)
    proxy.add("UpdateItem", delay=0.5, probability=rate)


class Supervisor:
    """Keeps ``count`` workers running; records how each one ended."""

    def __init__(self, env: dict[str, str], count: int, logs: Path, name: str = "worker"):
        self.env, self.count, self.logs, self.name = env, count, logs, name
        self.workers: list[WorkerProcess] = []
        self.retired: list[WorkerProcess] = []
        self.crashes: list[tuple[str, int]] = []
        self.started = 0
        self.lock = threading.Lock()

    def reap(self) -> None:
        """Retire the workers that exited, recording the crashes among them."""
        with self.lock:
            for worker in list(self.workers):
                code = worker.process.poll()
                if code is not None:
                    self.workers.remove(worker)
                    self.retired.append(worker)
                    if code > 0:
                        self.crashes.append((str(worker.log_path), code))

    def top_up(self) -> None:
        self.reap()
        with self.lock:
            while len(self.workers) < self.count:
                self.started += 1
                self.workers.append(WorkerProcess(self.env, self.logs / f"{self.name}-{self.started}.log"))

    def alive(self) -> list[WorkerProcess]:
        with self.lock:
            return [worker for worker in self.workers if worker.process.poll() is None]

    def every(self) -> list[WorkerProcess]:
        with self.lock:
            return self.retired + self.workers

    def stop_all(self) -> None:
        for worker in list(self.workers):
            worker.signal(signal.SIGCONT)
            worker.stop()
        self.reap()  # not top_up: that would start workers nobody stops


def chaos(
    supervisors: list[Supervisor], figures: Figures, rng: random.Random, pause_seconds: float, until: float, stop: threading.Event
) -> None:
    while not stop.wait(rng.uniform(1.0, 3.0)) and time.monotonic() < until:
        alive = [worker for supervisor in supervisors for worker in supervisor.alive()]
        if not alive:
            continue
        worker = rng.choice(alive)
        action = rng.random()
        if action < 0.35:
            worker.signal(signal.SIGKILL)
            figures.kills += 1
        elif action < 0.65:
            worker.signal(signal.SIGSTOP)
            figures.pauses += 1
            stop.wait(pause_seconds)
            worker.signal(signal.SIGCONT)
        else:
            worker.signal(signal.SIGTERM)
            figures.terms += 1


def drain_dead_letters(stacks: list[StepStack], stop: threading.Event, figures: Figures) -> None:
    """What the DLQs' event source mappings do, every half second."""
    while not stop.wait(0.5):
        for stack in stacks:
            figures.dead_lettered += deadletters.pump(stack)


def check(stack: StepStack, uploads: dict[str, bytes], figures: Figures) -> None:
    for key, body in uploads.items():
        job = stack.job(key)
        status = job.get("status")
        if status == "succeeded":
            figures.succeeded += 1
            step = job["steps"][STEP]
            _, result_key = split_s3_uri(step["result_file"])
            result = stack.result(result_key)
            attempt_in_key = int(result_key.rsplit("/", 2)[-2].removeprefix("attempt-"))
            if (
                result["output"]["sha256"] != hashlib.sha256(body).hexdigest()
                or result["attempt"] != attempt_in_key
                or result["job_id"] != job["job_id"]
            ):
                figures.wrong_bytes += 1
        elif status == "failed":
            figures.failed += 1
            reason = str(job["steps"][STEP].get("error", "?")).split(":")[0]
            figures.failure_reasons[reason] = figures.failure_reasons.get(reason, 0) + 1
        else:
            figures.stuck += 1


@dataclass
class Video:
    """A split video of the soak: its file and what one pass of the same processor over it reads to a user."""

    key: str
    path: Path
    reference: dict[str, Any]


def user_view(output: dict[str, Any], files: list[str]) -> dict[str, Any]:
    """What a user reads of a result: the output document but its timings, and the pictures list."""
    return {"output": {name: value for name, value in output.items() if name != "timings"}, "files": sorted(files)}


def make_video(folder: Path, key: str, spec: tuple[float, float, tuple[int, int]]) -> Video:
    """Write a short video and compute its single pass in this process (the processor the video workers run)."""
    from tools.sample_media import long_video
    from worker.detection.engine import DetectionProcessor
    from worker.processing import StepContext

    seconds, fps, size = spec
    path = long_video(folder / Path(key).name, seconds, fps, size)
    workdir = folder / f"{path.stem}-one-pass"
    workdir.mkdir()
    output = DetectionProcessor(VIDEO_OPTIONS).process(path, StepContext("one-pass", VIDEO_STEP, "bucket", key, "v", 1, workdir))
    return Video(key, path, user_view(output.document, list(output.files)))


def upload(stack: StepStack, key: str, body: bytes) -> None:
    """An upload and its S3 notification on the step's queue."""
    stack.put(key, body)
    stack.send(stack.s3_event(key))


def merged_matches(stack: StepStack, job: dict[str, Any], video: Video) -> list[str]:
    """How a succeeded video's committed result differs from its single pass (and from a split, merged one)."""
    step = job["steps"][VIDEO_STEP]
    count = int(step.get("segment_count") or 0)
    problems = [] if count > 1 else [f"not split (segment count {count})"]
    _, result_key = split_s3_uri(step["result_file"])
    result = stack.result(result_key)
    if result["job_id"] != job["job_id"] or result["attempt"] != int(result_key.rsplit("/", 2)[-2].removeprefix("attempt-")):
        problems.append(f"result {result_key} names job {result['job_id']} attempt {result['attempt']}")
    if [part.get("index") for part in result.get("segments", [])] != list(range(count)):
        problems.append(f"merged from segments {[part.get('index') for part in result.get('segments', [])]}, not 0..{count - 1}")
    view = user_view(result["output"], result["files"])
    if view != video.reference:
        for section in ("output", "files"):
            if section == "files" and view["files"] != video.reference["files"]:
                problems.append(f"pictures {view['files']} != single pass {video.reference['files']}")
            elif section == "output":
                names = sorted(set(view["output"]) | set(video.reference["output"]))
                differ = [name for name in names if view["output"].get(name) != video.reference["output"].get(name)]
                if differ:
                    problems.append(f"output differs from the single pass in {differ}")
    return problems


def check_videos(stack: StepStack, videos: dict[str, Video], workers: list[WorkerProcess], figures: Figures) -> None:
    for key, video in videos.items():
        job = stack.job(key)
        status = job.get("status")
        if status == "succeeded":
            figures.videos_succeeded += 1
            figures.segments += int(job["steps"][VIDEO_STEP].get("segment_count") or 0)
            problems = merged_matches(stack, job, video)
            if problems:
                figures.mismatches += 1
                print(f"mismatch: {key}: {'; '.join(problems)}", file=sys.stderr)
            else:
                figures.merged_equal += 1
        elif status == "failed":
            figures.videos_failed += 1
            reason = str(job["steps"][VIDEO_STEP].get("error", "?")).split(":")[0]
            figures.failure_reasons[f"video: {reason}"] = figures.failure_reasons.get(f"video: {reason}", 0) + 1
        else:
            figures.videos_stuck += 1
    figures.merges = sum(len(worker.events("merge done")) for worker in workers)


class RetryDrill:
    """One split video that fails for a cause the soak then removes, and a `gpupipe retry` of it.

    ``arm``: every read of the video's object after the first two (the split's, then one segment's) is
    answered AccessDenied, so the other segments spend their attempts and the job fails. ``advance`` (called
    as the soak waits): once the job has failed, the rule goes, the real CLI's ``retry`` puts the step back to
    pending, and what the router sends on that change is sent; then it waits for the job to end again.
    ``recovered``: it succeeded, its merged result equals the single pass, and no segment done before the
    retry was done again (same attempt count, same committed result).
    """

    def __init__(self, stack: StepStack, proxy: FaultProxy, key: str, folder: Path, figures: Figures):
        self.stack, self.proxy, self.key, self.figures = stack, proxy, key, figures
        self.outputs = folder / "stack-outputs.json"
        names = {"bucket_name": stack.bucket, "input_prefix": "uploads/", "results_prefix": "results/", "jobs_table_name": stack.table_name}
        self.outputs.write_text(json.dumps(names))  # what `terraform output -json` gives the CLI
        self.rule: Rule | None = None
        self.phase = "idle"  # idle -> armed -> retried -> ended
        self.done_before: dict[str, tuple[Any, Any]] = {}  # segment -> (attempts, result_file) when it was retried

    def arm(self) -> None:
        refused = (403, "AccessDenied", "Access Denied")
        self.rule = self.proxy.add("S3.GET", path_contains=f"/{self.stack.bucket}/{self.key}", after=2, error=refused)
        self.phase = "armed"
        self.figures.retry_drill = True

    @property
    def settled(self) -> bool:
        return self.phase in ("idle", "ended")

    def advance(self) -> None:
        job = self.stack.job(self.key)
        status = job.get("status")
        if self.phase == "armed" and status == "succeeded":
            self.figures.retry_story.append("the drill's video succeeded although its reads were refused: no failure to retry")
            self.phase = "ended"
        elif self.phase == "armed" and status == "failed":
            step = job["steps"][VIDEO_STEP]
            where = f"{step.get('segments_done', 0)}/{step.get('segment_count', '?')} segments done"
            self.figures.retry_story.append(f"failed ({where}): {step.get('error')}")
            assert self.rule is not None
            self.proxy.remove(self.rule)  # the cause removed: the bucket policy fixed
            self.done_before = self.done_segments(self.stack.job(self.key))
            self.retry(job["job_id"])
            self.phase = "retried"
        elif self.phase == "retried" and status in ENDED:
            error = f" ({job['steps'][VIDEO_STEP].get('error')})" if status == "failed" else ""
            self.figures.retry_story.append(f"after the retry: {status}{error}")
            self.phase = "ended"

    def retry(self, job_id: str) -> None:
        """`gpupipe retry <file name>` as a user runs it, then what the stream router sends for the change it made."""
        from gpupipe.cli import main as gpupipe

        store = JobStore(self.stack.table)
        before = store.get_job(job_id)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            code = gpupipe(["--outputs", str(self.outputs), "retry", Path(self.key).name])
        self.figures.retry_story.append(f"gpupipe retry {Path(self.key).name}: exit {code}: {printed.getvalue().strip()}")
        after = store.get_job(job_id)
        if code == 0 and after is not None:
            self.figures.retried += 1
            for action in route("MODIFY", before, after):
                if isinstance(action, Enqueue):
                    self.stack.send(WorkMessage.for_job(after.obj, action.step).to_body())

    @staticmethod
    def done_segments(job: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        segments = job.get("steps", {}).get(VIDEO_STEP, {}).get("segments", {})
        return {index: (item.get("attempts"), item.get("result_file")) for index, item in segments.items() if item.get("state") == "done"}

    def recovered(self, videos: dict[str, Video]) -> None:
        job = self.stack.job(self.key)
        if not self.figures.retried or job.get("status") != "succeeded" or merged_matches(self.stack, job, videos[self.key]):
            return
        now = self.done_segments(job)
        redone = sorted(index for index, done in self.done_before.items() if now.get(index) != done)
        if redone:
            self.figures.retry_story.append(f"segments done before the retry were done again: {redone}")
            return
        self.figures.recovered += 1
        self.figures.retry_story.append(f"segments done before the retry and kept: {sorted(self.done_before, key=int)}")


def run(
    jobs: int,
    workers: int,
    chaos_seconds: float,
    settle_seconds: float,
    seed: int,
    fault_rate: float,
    logs: Path,
    videos: int = 0,
    video_workers: int = 2,
    retry: bool = False,
) -> Figures:
    """The soak: ``jobs`` images, ``videos`` split videos (at most ``len(VIDEOS)``) and, with ``retry``, the drill's."""
    for name, value in CREDENTIALS.items():
        os.environ.setdefault(name, value)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    rng = random.Random(seed)  # seeded: the same run, the same chaos schedule (timing aside)
    figures = Figures(submitted=jobs)
    media = logs / "media"
    media.mkdir(exist_ok=True)
    video_specs = {f"uploads/soak/video-{n}.avi": spec for n, spec in enumerate(VIDEOS[:videos])}
    if retry:
        video_specs = {"uploads/soak/video-retried.avi": RETRY_VIDEO, **video_specs}  # first: it has the longest way to go
    split_videos = {key: make_video(media, key, spec) for key, spec in video_specs.items()}  # the single passes, before the chaos
    figures.videos = len(split_videos)
    server = Emulator()
    endpoint = server.start()
    proxy = FaultProxy(endpoint, seed=seed)
    stop = threading.Event()
    visibility = 4
    stack = StepStack.create(endpoint, visibility_timeout=visibility, max_receive_count=4)
    video_stack = stack.beside(VIDEO_STEP)
    drill = RetryDrill(video_stack, proxy, next(iter(split_videos)), logs, figures) if retry else None
    with deadletters.configured(stack, STEP, (video_stack, VIDEO_STEP)):
        common = {"AWS_ENDPOINT_URL": proxy.url, "HEARTBEAT_SECONDS": 1, "GRACE_SECONDS": 1, "MAX_ATTEMPTS": 5, "AWS_MAX_ATTEMPTS": 3}
        env = stack.worker_env(
            STEP,
            PROCESSOR="tests.support.plugins:SlowProcessor",
            PROCESSOR_OPTIONS=json.dumps({"seconds": 0.2}),
            STEP_TIMEOUT_SECONDS=60,
            **common,
        )
        video_env = video_stack.worker_env(
            VIDEO_STEP,
            PROCESSOR="detect",
            PROCESSOR_OPTIONS=json.dumps(VIDEO_OPTIONS),
            SEGMENT_SECONDS=SEGMENT_SECONDS,
            STEP_TIMEOUT_SECONDS=120,
            **common,
        )
        supervisors = [Supervisor(env, workers, logs)]
        if split_videos:
            supervisors.append(Supervisor(video_env, video_workers, logs, "video-worker"))
        started = time.monotonic()
        threads = [threading.Thread(target=drain_dead_letters, args=([stack, video_stack], stop, figures), daemon=True)]
        uploads: dict[str, bytes] = {}
        try:
            inject_faults(proxy, fault_rate)
            if drill is not None:
                drill.arm()
            for supervisor in supervisors:
                supervisor.top_up()
            chaos_args = (supervisors, figures, rng, visibility + 2.0, started + chaos_seconds, stop)
            threads.append(threading.Thread(target=chaos, args=chaos_args, daemon=True))
            for thread in threads:
                thread.start()
            # Arrivals spread over the first half of the chaos; a video every len(split_videos)-th of the way.
            pending_videos = list(split_videos.values())
            for index in range(jobs):
                if pending_videos and index >= jobs * (len(split_videos) - len(pending_videos)) / len(split_videos):
                    video = pending_videos.pop(0)
                    upload(video_stack, video.key, video.path.read_bytes())
                key = f"uploads/soak/{index:05d}.png"
                body = png(8 + index % 7, 8 + index % 5, (index % 251, (index * 7) % 253, (index * 13) % 255))
                uploads[key] = body
                upload(stack, key, body)
                time.sleep(chaos_seconds / 2 / jobs)
            for video in pending_videos:
                upload(video_stack, video.key, video.path.read_bytes())
            deadline = started + chaos_seconds + settle_seconds
            while time.monotonic() < deadline:
                for supervisor in supervisors:
                    supervisor.top_up()
                if drill is not None:
                    drill.advance()
                if (
                    time.monotonic() > started + chaos_seconds
                    and (drill is None or drill.settled)
                    and all(stack.job(key).get("status") in ENDED for key in uploads)
                    and all(video_stack.job(key).get("status") in ENDED for key in split_videos)
                ):
                    break
                time.sleep(1.0)
            proxy.clear()
        finally:
            stop.set()
            for supervisor in supervisors:
                supervisor.stop_all()
            figures.faults = sum(proxy.faults.values())
            proxy.close()
        check(stack, uploads, figures)
        check_videos(video_stack, split_videos, [worker for worker in supervisors[-1].every()] if split_videos else [], figures)
        if drill is not None:
            drill.recovered(split_videos)
        crashes = [crash for supervisor in supervisors for crash in supervisor.crashes]
        figures.crashes = len(crashes)
        figures.seconds = round(time.monotonic() - started, 1)
        for path, code in crashes:
            print(f"crash: exit {code}, log {path}", file=sys.stderr)
    server.stop()
    return figures


def report(figures: Figures) -> str:
    verdict = "PASS" if figures.ok else "FAIL"
    reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(figures.failure_reasons.items())) or "-"
    return (
        f"soak {verdict} in {figures.seconds:.0f} s\n"
        f"  jobs submitted {figures.submitted}  succeeded {figures.succeeded}  failed {figures.failed}  "
        f"stuck {figures.stuck}  wrong-bytes {figures.wrong_bytes}  worker crashes {figures.crashes}\n"
        f"  chaos: SIGKILL {figures.kills}  SIGSTOP past the lease {figures.pauses}  SIGTERM {figures.terms}  "
        f"AWS faults injected {figures.faults}  dead-lettered {figures.dead_lettered}\n"
        f"  failure reasons: {reasons}"
        + (
            f"\n  split videos submitted {figures.videos}  succeeded {figures.videos_succeeded}  failed {figures.videos_failed}  "
            f"stuck {figures.videos_stuck}  segments {figures.segments}  merges {figures.merges}  "
            f"merged = single pass {figures.merged_equal}/{figures.videos_succeeded}  mismatches {figures.mismatches}"
            if figures.videos
            else ""
        )
        + (
            f"\n  gpupipe retry of a failed split video: retried {figures.retried}  recovered {figures.recovered}"
            + "".join("\n    " + line.replace("\n", "\n      ") for line in figures.retry_story)
            if figures.retry_drill
            else ""
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--videos", type=int, default=len(VIDEOS), help=f"split videos beside the images (at most {len(VIDEOS)})")
    parser.add_argument("--video-workers", type=int, default=2)
    parser.add_argument("--no-retry", dest="retry", action="store_false", help="leave out the failed video and its `gpupipe retry`")
    parser.add_argument("--chaos-seconds", type=float, default=150)
    parser.add_argument("--settle-seconds", type=float, default=90)
    parser.add_argument("--fault-rate", type=float, default=0.03)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--logs", type=Path, default=None, help="keep the workers' logs here")
    args = parser.parse_args(argv)
    logs = args.logs or Path(tempfile.mkdtemp(prefix="soak-"))
    logs.mkdir(parents=True, exist_ok=True)
    figures = run(
        args.jobs,
        args.workers,
        args.chaos_seconds,
        args.settle_seconds,
        args.seed,
        args.fault_rate,
        logs,
        videos=args.videos,
        video_workers=args.video_workers,
        retry=args.retry,
    )
    print(report(figures))
    print(f"  worker logs: {logs}")
    return 0 if figures.ok else 1


if __name__ == "__main__":
    sys.exit(main())
