"""Randomized soak of the job lifecycle: real workers, moto behind a fault proxy, chaos, and the dead-letter consumer.

A few hundred jobs go through 2-3 ``python -m worker`` processes while a chaos thread SIGKILLs
them, SIGSTOPs them past their lease (then SIGCONTs), and SIGTERMs them, a supervisor keeps the
worker count up, and the proxy randomly throttles, fails (5xx) or slows AWS calls. The step's
dead-letter queue is drained into the real dead-letter handler, as its event source mapping would.

At the end it prints jobs submitted / succeeded / failed / stuck / wrong-bytes / worker crashes and
exits non-zero unless stuck = 0, wrong-bytes = 0 and crashes = 0. Wrong bytes: a succeeded job whose
committed ``result.json`` does not hold the hash of the bytes uploaded for it, or not the attempt
its ``result_file`` names. A crash: a worker exit that is non-zero and not caused by a signal.

Run: ``make soak`` (``SOAK_ARGS="--jobs 300 --seed 7"``); ``tests/test_soak.py`` runs a short smoke.
"""

from __future__ import annotations

import argparse
import hashlib
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

from local_runtime.emulator import Emulator
from pipeline_core.jobs import split_s3_uri
from tests.support import deadletters
from tests.support.aws import CREDENTIALS, StepStack
from tests.support.faultproxy import FaultProxy
from tests.support.media import png
from tests.support.workers import WorkerProcess

STEP = "detect"


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
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.stuck == 0 and self.wrong_bytes == 0 and self.crashes == 0


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

    def __init__(self, env: dict[str, str], count: int, logs: Path, rng: random.Random):
        self.env, self.count, self.logs, self.rng = env, count, logs, rng
        self.workers: list[WorkerProcess] = []
        self.retired: list[WorkerProcess] = []
        self.crashes: list[tuple[str, int]] = []
        self.started = 0
        self.lock = threading.Lock()

    def top_up(self) -> None:
        with self.lock:
            for worker in list(self.workers):
                code = worker.process.poll()
                if code is not None:
                    self.workers.remove(worker)
                    self.retired.append(worker)
                    if code > 0:
                        self.crashes.append((str(worker.log_path), code))
            while len(self.workers) < self.count:
                self.started += 1
                self.workers.append(WorkerProcess(self.env, self.logs / f"worker-{self.started}.log"))

    def pick(self) -> WorkerProcess | None:
        with self.lock:
            alive = [worker for worker in self.workers if worker.process.poll() is None]
        return self.rng.choice(alive) if alive else None

    def stop_all(self) -> None:
        for worker in list(self.workers):
            worker.signal(signal.SIGCONT)
            worker.stop()
        self.top_up()


def chaos(supervisor: Supervisor, figures: Figures, rng: random.Random, pause_seconds: float, until: float, stop: threading.Event) -> None:
    while not stop.wait(rng.uniform(1.0, 3.0)) and time.monotonic() < until:
        worker = supervisor.pick()
        if worker is None:
            continue
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


def drain_dead_letters(stack: StepStack, stop: threading.Event, figures: Figures) -> None:
    """What the DLQ's event source mapping does, every half second."""
    while not stop.wait(0.5):
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


def run(jobs: int, workers: int, chaos_seconds: float, settle_seconds: float, seed: int, fault_rate: float, logs: Path) -> Figures:
    for name, value in CREDENTIALS.items():
        os.environ.setdefault(name, value)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    rng = random.Random(seed)  # seeded: the same run, the same chaos schedule (timing aside)
    figures = Figures(submitted=jobs)
    server = Emulator()
    endpoint = server.start()
    proxy = FaultProxy(endpoint, seed=seed)
    stop = threading.Event()
    visibility = 4
    stack = StepStack.create(endpoint, visibility_timeout=visibility, max_receive_count=4)
    with deadletters.configured(stack, STEP):
        env = stack.worker_env(
            STEP,
            AWS_ENDPOINT_URL=proxy.url,
            PROCESSOR="tests.support.plugins:SlowProcessor",
            PROCESSOR_OPTIONS=json.dumps({"seconds": 0.2}),
            HEARTBEAT_SECONDS=1,
            GRACE_SECONDS=1,
            MAX_ATTEMPTS=5,
            STEP_TIMEOUT_SECONDS=60,
            AWS_MAX_ATTEMPTS=3,
        )
        supervisor = Supervisor(env, workers, logs, rng)
        started = time.monotonic()
        threads = [threading.Thread(target=drain_dead_letters, args=(stack, stop, figures), daemon=True)]
        uploads: dict[str, bytes] = {}
        try:
            inject_faults(proxy, fault_rate)
            supervisor.top_up()
            chaos_args = (supervisor, figures, rng, visibility + 2.0, started + chaos_seconds, stop)
            threads.append(threading.Thread(target=chaos, args=chaos_args, daemon=True))
            for thread in threads:
                thread.start()
            for index in range(jobs):  # arrivals spread over the first half of the chaos
                key = f"uploads/soak/{index:05d}.png"
                body = png(8 + index % 7, 8 + index % 5, (index % 251, (index * 7) % 253, (index * 13) % 255))
                uploads[key] = body
                stack.put(key, body)
                stack.send(stack.s3_event(key))
                time.sleep(chaos_seconds / 2 / jobs)
            deadline = started + chaos_seconds + settle_seconds
            while time.monotonic() < deadline:
                supervisor.top_up()
                if time.monotonic() > started + chaos_seconds and all(
                    stack.job(key).get("status") in ("succeeded", "failed") for key in uploads
                ):
                    break
                time.sleep(1.0)
            proxy.clear()
        finally:
            stop.set()
            supervisor.stop_all()
            figures.faults = sum(proxy.faults.values())
            proxy.close()
        check(stack, uploads, figures)
        figures.crashes = len(supervisor.crashes)
        figures.seconds = round(time.monotonic() - started, 1)
        for path, code in supervisor.crashes:
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
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--chaos-seconds", type=float, default=150)
    parser.add_argument("--settle-seconds", type=float, default=90)
    parser.add_argument("--fault-rate", type=float, default=0.03)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--logs", type=Path, default=None, help="keep the workers' logs here")
    args = parser.parse_args(argv)
    logs = args.logs or Path(tempfile.mkdtemp(prefix="soak-"))
    logs.mkdir(parents=True, exist_ok=True)
    figures = run(args.jobs, args.workers, args.chaos_seconds, args.settle_seconds, args.seed, args.fault_rate, logs)
    print(report(figures))
    print(f"  worker logs: {logs}")
    return 0 if figures.ok else 1


if __name__ == "__main__":
    sys.exit(main())
