"""make bench-split: one long camera-sized video, upload to result, with 1, 2 and 4 worker tasks.

Real ``python -m worker`` processes against a moto server on loopback, through the fault proxy, which
counts every AWS call the workers make (by API) and the bytes S3 sends back. The video is a 10-minute
1280x720 MPEG-4 file at 25 fps and 4 Mbit/s (``tools.sample_media.clip``, about 300 MB, written once and
kept in ``build/bench-media/``). The processor is ``detect`` with a detector whose cost per sampled frame
is a fixed sleep: it stands in for GPU time (one detector per task, so one "GPU" per task), chosen so that
this time, not decoding on the machine's CPU cores, is what the tasks share. Every run uses the same
video and settings (``SEGMENT_SECONDS`` at its default); only the number of tasks changes. The workers
are started and polling before the upload, as running ECS tasks would be. One more run with splitting
off (``SEGMENT_SECONDS=0``, one task) shows what one pass costs.

Targets: 4 tasks >= 3x faster than 1 task; the merge <= 5 % of the 4-task wall time; the bytes of the input
read from S3 by a split run (the split's planning read and every segment's) <= 1.3x the file. The merge's
reads of the segments' own results and files are printed apart (``merge MB``). Figures are printed as
measured, with MISSED and the reason where a target is not met. ``--json`` writes each run's figures (calls
by API included) for bench/costs.py.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2

from bench.costs import Rates, cost_table, per_video_hour
from local_runtime.emulator import Emulator
from pipeline_core.segment_plan import DEFAULT_SEGMENT_SECONDS
from tests.support.aws import CREDENTIALS, StepStack
from tests.support.faultproxy import FaultProxy
from tests.support.workers import WorkerProcess, wait_for
from tools.sample_media import clip
from worker.config import DEFAULT_CONCURRENCY

STEP = "detect"
MEDIA = Path(__file__).resolve().parents[1] / "build" / "bench-media"
SIZE, FPS, BIT_RATE = (1280, 720), 25, 4_000_000
BYTES_TARGET = 1.3


@dataclass
class Run:
    tasks: int
    segment_seconds: float
    wall: float
    merge: float
    segments: int
    workers_used: int
    file_bytes: int
    calls: dict[str, int] = field(default_factory=dict)  # AWS calls by API (S3.GET, ReceiveMessage, UpdateItem...) for this one file
    bytes_read: int = 0  # bytes S3 sent for the input's GETs: planning and every segment's ranged reads
    results_read: int = 0  # bytes S3 sent for other GETs: the merge's reads of the segments' results and files

    @property
    def read_ratio(self) -> float:
        return self.bytes_read / self.file_bytes

    @property
    def kind(self) -> str:
        return "split" if self.segment_seconds else "one pass"


def sample_video(minutes: float) -> Path:
    """The benchmark's video, written once (about 150 frames a second on one core) and kept in build/."""
    path = MEDIA / f"camera-{minutes:g}min-{SIZE[0]}x{SIZE[1]}-{FPS}fps-{BIT_RATE // 1000}k.mp4"
    if not path.exists():
        MEDIA.mkdir(parents=True, exist_ok=True)
        print(f"writing {path} (once; kept for later runs)...", flush=True)
        partial = path.with_suffix(".partial.mp4")
        clip(partial, seconds=minutes * 60, fps=FPS, size=SIZE, bit_rate=BIT_RATE)
        partial.rename(path)
    return path


def decode_rate(video: Path, frames: int = 500) -> float:
    """Frames a second one core decodes (OpenCV's grab, as the frame reader passes over unsampled frames)."""
    capture = cv2.VideoCapture(str(video))
    started = time.perf_counter()
    done = 0
    while done < frames and capture.grab():
        done += 1
    capture.release()
    return done / (time.perf_counter() - started)


def run_once(
    endpoint: str,
    proxy: FaultProxy,
    video: Path,
    tasks: int,
    segment_seconds: float,
    seconds_per_frame: float,
    concurrency: int,
    logs: Path,
    annotate: bool = False,
) -> Run:
    stack = StepStack.create(endpoint, visibility_timeout=120)
    options = {
        "detectors": [{"name": "tests.support.plugins:SquareDetector", "seconds_per_frame": seconds_per_frame}],
        "sample_fps": 1,
        "batch_size": 8,
    }
    env = stack.worker_env(
        STEP,
        PROCESSOR="detect",
        PROCESSOR_OPTIONS=json.dumps(options),
        SEGMENT_SECONDS=segment_seconds,
        HEARTBEAT_SECONDS=20,
        CONCURRENCY=concurrency,
        ANNOTATE=str(annotate).lower(),
        AWS_ENDPOINT_URL=proxy.url,  # the workers' calls are counted; the benchmark's own (setup, upload, polling) are not
    )
    workers = [WorkerProcess(env, logs / f"{tasks}-{segment_seconds:g}-{n}.log") for n in range(tasks)]
    key = "uploads/camera.mp4"
    try:
        for worker in workers:
            wait_for(functools.partial(worker.events, "worker started"), 60, what="workers to start")
        stack.put(key, video.read_bytes())
        calls, sent = Counter(proxy.calls), Counter(proxy.s3_read)
        started = time.monotonic()
        stack.send(stack.s3_event(key))
        job: dict[str, Any] = wait_for(
            lambda: stack.job(key).get("status") in ("succeeded", "failed") and stack.job(key), 1800, interval=0.1, what="the job"
        )
        wall = time.monotonic() - started
        calls, sent = Counter(proxy.calls) - calls, Counter(proxy.s3_read) - sent
        input_path = f"/{stack.bucket}/{key}"
        if job["status"] != "succeeded":
            raise RuntimeError(f"the job failed: {job['steps'][STEP].get('error')}")
        step = job["steps"][STEP]
        merge = float(step["finished_at"]) - float(step["merge_started_at"]) if "merge_started_at" in step else 0.0

        def used() -> set[str]:  # the tasks that did work (the step's end is written before its worker logs it)
            return {event["worker_id"] for worker in workers for event in worker.events("segment done") + worker.events("step done")}

        wait_for(used, 30, what="the last worker's log line")
        return Run(
            tasks,
            segment_seconds,
            wall,
            merge,
            int(step.get("segment_count") or 0),
            len(used()),
            video.stat().st_size,
            dict(sorted(calls.items())),
            sent[input_path],
            sum(sent.values()) - sent[input_path],
        )
    finally:
        for worker in workers:
            worker.stop()
        stack.aws["s3"].delete_object(Bucket=stack.bucket, Key=key)  # moto keeps objects in memory


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the synthetic video (at least 5)")
    parser.add_argument("--seconds-per-frame", type=float, default=0.3, help="the detector's fixed cost per sampled frame")
    parser.add_argument("--tasks", default="1,2,4")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help="messages in flight per task (the module's default); the detector is one GPU per task either way",
    )
    parser.add_argument("--no-one-pass", action="store_true", help="skip the run with splitting off")
    parser.add_argument(
        "--annotate",
        action="store_true",
        help="the step's annotate on: each segment also writes its annotated video, decoding its range a second time",
    )
    parser.add_argument("--json", type=Path, help="write every run's figures (calls by API included) here")
    args = parser.parse_args()
    for name, value in CREDENTIALS.items():
        os.environ.setdefault(name, value)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    video = sample_video(args.minutes)
    size = video.stat().st_size
    frames = round(args.minutes * 60 * FPS)
    sampled = round(args.minutes * 60)
    rate = decode_rate(video)
    detector = sampled * args.seconds_per_frame
    print(
        f"video: {args.minutes:g} min MPEG-4 part 2 (tools.sample_media.clip), {SIZE[0]}x{SIZE[1]} at {FPS} fps, "
        f"{BIT_RATE / 1e6:g} Mbit/s: {size / 1e6:.1f} MB, {frames} frames"
    )
    print(
        f"stand-in GPU: {args.seconds_per_frame:g} s per sampled frame; sampled at 1 fps: {sampled} frames = "
        f"{detector:.0f} s of detector time\n"
        f"decoding: every frame is decoded (unsampled ones grabbed), {rate:.0f} frames/s on one core here: "
        f"{frames / rate:.0f} s of CPU for the whole video, {100 * frames / rate / detector:.0f} % of the detector time"
    )
    print(
        f"segment_seconds: {DEFAULT_SEGMENT_SECONDS:g} (the default) for every split run; CONCURRENCY {args.concurrency} per task; "
        f"annotate {'on: each segment decodes its range again for annotated.mp4' if args.annotate else 'off (the default)'}\n"
    )
    print(
        f"{'tasks':>5} {'segments':>8} {'workers':>7} {'wall s':>8} {'merge s':>8} {'merge %':>8} {'speed-up':>8} "
        f"{'S3 GETs':>7} {'read/file':>9} {'merge MB':>8} {'AWS calls':>9}"
    )
    server = Emulator()
    endpoint = server.start()
    proxy = FaultProxy(endpoint)
    runs: dict[int, Run] = {}
    one_pass: Run | None = None

    def line(run: Run, label: str, speed_up: str) -> None:
        print(
            f"{label:>5} {run.segments or '(off)':>8} {run.workers_used:>7} {run.wall:>8.2f} "
            f"{run.merge:>8.2f} {100 * run.merge / run.wall:>7.1f}% {speed_up:>8} "
            f"{run.calls.get('S3.GET', 0):>7} {run.read_ratio:>8.2f}x {run.results_read / 1e6:>8.1f} {sum(run.calls.values()):>9}",
            flush=True,
        )

    try:
        with tempfile.TemporaryDirectory(prefix="split-bench-") as tmp:
            for tasks in [int(n) for n in args.tasks.split(",")]:
                run = run_once(
                    endpoint,
                    proxy,
                    video,
                    tasks,
                    DEFAULT_SEGMENT_SECONDS,
                    args.seconds_per_frame,
                    args.concurrency,
                    Path(tmp),
                    args.annotate,
                )
                runs[tasks] = run
                line(run, str(tasks), f"{runs[min(runs)].wall / run.wall:.2f}x")
            if not args.no_one_pass:
                one_pass = run_once(endpoint, proxy, video, 1, 0, args.seconds_per_frame, args.concurrency, Path(tmp), args.annotate)
                line(one_pass, "1", "one pass")
    finally:
        proxy.close()
        server.stop()
    print("\nAWS calls for the file, by API (the workers' idle receives while it ran included):")
    for run in [*runs.values(), *([one_pass] if one_pass else [])]:
        label = f"{run.tasks} task{'s' if run.tasks > 1 else ''}, {run.kind}"
        print(f"  {label:<17} " + ", ".join(f"{api} {count}" for api, count in run.calls.items()))
    print()
    if 1 in runs and 4 in runs:
        speed_up = runs[1].wall / runs[4].wall
        share = runs[4].merge / runs[4].wall
        per_task = -(-runs[4].segments // 4)
        verdict = (
            "met"
            if speed_up >= 3
            else (
                f"MISSED: of {runs[4].segments} segments over 4 tasks the busiest does {per_task}, so at best "
                f"{runs[4].segments / per_task:.2f}x before the split, merge and polling overheads"
            )
        )
        print(f"4 tasks vs 1: {speed_up:.2f}x (target >= 3x): {verdict}")
        print(f"merge: {100 * share:.1f} % of the 4-task wall time (target <= 5 %): {'met' if share <= 0.05 else 'MISSED'}")
    if runs:
        worst = max(runs.values(), key=lambda run: run.read_ratio)
        verdict = (
            "met"
            if worst.read_ratio <= BYTES_TARGET
            else f"MISSED: {worst.segments} segments each read the header, the index and up to one read-ahead past their range"
        )
        print(
            f"input bytes read from S3 by a split run, planning and every segment together: at most {worst.read_ratio:.2f}x the file "
            f"({worst.tasks} task{'s' if worst.tasks > 1 else ''}; target <= {BYTES_TARGET}x): {verdict}"
        )
        print(
            f"the merge read {worst.results_read / 1e6:.1f} MB of the segments' own results and files"
            + (" (their annotated videos, to join)" if args.annotate else "")
        )
    if runs:
        priced = runs.get(4) or runs[max(runs)]
        print(
            f"\nrequest cost from the {priced.tasks}-task run's calls, scaled to an hour of video (its workers' idle 1 s receives "
            "included; on AWS the worker long-polls 20 s, so fewer); instance cost as a formula: the stand-in detector's rate "
            "is not a GPU's:"
        )
        print(cost_table(None, Rates(), video_hour_calls=per_video_hour(priced.calls, args.minutes * 60), where="a measured GPU rate"))
    if one_pass is not None:
        print(f"one pass (splitting off) reads {one_pass.read_ratio:.2f}x the file; before ranged reads every segment read the whole file")
    print(f"date: {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs seen by this process")
    if args.json:
        records = [asdict(run) | {"read_ratio": round(run.read_ratio, 4)} for run in [*runs.values(), *([one_pass] if one_pass else [])]]
        args.json.write_text(json.dumps({"video_bytes": size, "seconds_per_frame": args.seconds_per_frame, "runs": records}, indent=1))
        print(f"figures: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
