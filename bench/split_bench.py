"""make bench-split: one long video, upload to result, with 1, 2 and 4 worker tasks.

Real ``python -m worker`` processes against a moto server on loopback, the detect processor with a
detector whose cost per sampled frame is a fixed sleep (standing in for GPU time, so the machine's CPU
cores are not what is measured). Every run uses the same video and settings (``SEGMENT_SECONDS`` at its
default); only the number of tasks changes. The workers are started and polling before the upload, as
running ECS tasks would be. One more run with splitting off (``SEGMENT_SECONDS=0``, one task) shows what
one pass costs.

Targets: 4 tasks >= 3x faster than 1 task; the merge <= 5 % of the 4-task wall time. Figures are printed
as measured, with MISSED and the reason where a target is not met.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from local_runtime.emulator import Emulator
from pipeline_core.segments import DEFAULT_SEGMENT_SECONDS
from tests.support.aws import CREDENTIALS, StepStack
from tests.support.workers import WorkerProcess, wait_for
from tools.sample_media import long_video
from worker.config import DEFAULT_CONCURRENCY

STEP = "detect"


@dataclass
class Run:
    tasks: int
    segment_seconds: float
    wall: float
    merge: float
    segments: int
    workers_used: int


def run_once(endpoint: str, video: Path, tasks: int, segment_seconds: float, seconds_per_frame: float, concurrency: int, logs: Path) -> Run:
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
    )
    workers = [WorkerProcess(env, logs / f"{tasks}-{segment_seconds:g}-{n}.log") for n in range(tasks)]
    try:
        for worker in workers:
            wait_for(lambda w=worker: w.events("worker started"), 60, what="workers to start")
        key = "uploads/long.avi"
        started = time.monotonic()
        stack.put(key, video.read_bytes())
        stack.send(stack.s3_event(key))
        job = wait_for(
            lambda: stack.job(key).get("status") in ("succeeded", "failed") and stack.job(key), 1800, interval=0.1, what="the job"
        )
        wall = time.monotonic() - started
        if job["status"] != "succeeded":
            raise RuntimeError(f"the job failed: {job['steps'][STEP].get('error')}")
        step = job["steps"][STEP]
        merge = float(step["finished_at"]) - float(step["merge_started_at"]) if "merge_started_at" in step else 0.0
        used = {event["worker_id"] for worker in workers for event in worker.events("segment done") + worker.events("step done")}
        return Run(tasks, segment_seconds, wall, merge, int(step.get("segment_count") or 0), len(used))
    finally:
        for worker in workers:
            worker.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the synthetic video (at least 5)")
    parser.add_argument("--seconds-per-frame", type=float, default=0.05, help="the detector's fixed cost per sampled frame")
    parser.add_argument("--tasks", default="1,2,4")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help="messages in flight per task (the module's default); the detector is one GPU per task either way",
    )
    args = parser.parse_args()
    for name, value in CREDENTIALS.items():
        os.environ.setdefault(name, value)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = Emulator()
    endpoint = server.start()
    with tempfile.TemporaryDirectory(prefix="split-bench-") as tmp:
        folder = Path(tmp)
        video = long_video(folder / "long.avi", seconds=args.minutes * 60, fps=10)
        sampled = round(args.minutes * 60)
        print(
            f"video: {args.minutes:g} min synthetic Motion-JPEG, 160x120 at 10 fps, {video.stat().st_size / 1e6:.1f} MB; "
            f"sampled at 1 fps: {sampled} frames x {args.seconds_per_frame:g} s = {sampled * args.seconds_per_frame:.0f} s of detector time"
        )
        print(f"segment_seconds: {DEFAULT_SEGMENT_SECONDS:g} (the default) for every split run; CONCURRENCY {args.concurrency} per task\n")
        print(f"{'tasks':>5} {'segments':>8} {'workers used':>12} {'wall s':>8} {'merge s':>8} {'merge %':>8} {'speed-up':>8}")
        runs: dict[int, Run] = {}
        for tasks in [int(n) for n in args.tasks.split(",")]:
            run = run_once(endpoint, video, tasks, DEFAULT_SEGMENT_SECONDS, args.seconds_per_frame, args.concurrency, folder)
            runs[tasks] = run
            speed_up = runs[min(runs)].wall / run.wall
            print(
                f"{tasks:>5} {run.segments:>8} {run.workers_used:>12} {run.wall:>8.2f} {run.merge:>8.2f} "
                f"{100 * run.merge / run.wall:>7.1f}% {speed_up:>7.2f}x"
            )
        one_pass = run_once(endpoint, video, 1, 0, args.seconds_per_frame, args.concurrency, folder)
        print(f"{1:>5} {'(off)':>8} {one_pass.workers_used:>12} {one_pass.wall:>8.2f} {'-':>8} {'-':>8}   one pass, SEGMENT_SECONDS=0")
    server.stop()
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
    print(f"date: {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs seen by this process")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
