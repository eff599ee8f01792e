"""Worker throughput: the sequential worker against several messages in flight with cross-job batching.

Runs, in one go and on the same emulator (a moto server process on loopback, the worker as a real
``python -m worker`` process, S3 notifications straight onto the step's queue):

(a) the sequential worker (CONCURRENCY=1: one message at a time, as before), (b) the worker with several
messages in flight and batching across jobs, (c) the processor alone (its bound: back-to-back full
batches), (d) the new worker with a zero-cost processor (the I/O bound the emulator and this machine
allow). The processor stands in for a GPU: a fixed sleep per inference call of up to ``batch_size``
images, through the same ``worker.batching.Batcher`` the detection engine uses.

Every worker call goes through the fault proxy (``tests/support/faultproxy.py``), which counts the AWS
calls by API: the run prints calls per file, and the receives, deletes and visibility changes together
against their budget (under 0.3 per file at ``CONCURRENCY`` 8). It runs twice: without added
latency (the emulator's CPU is the bound) and with AWS-like latency per call (``AWS_LATENCY``: SQS, DynamoDB
and S3 medians from AWS's documentation, lognormal, seeded), as a worker on AWS waits on its calls.

Targets, in both: (b) >= 5 x (a) and (b) >= 0.7 x min(c, d). Then the cost table (``bench/costs.py``)
from the calls counted, and the real detectors (the engine's defaults, people-ssdlite and faces-mtcnn, on this
CPU) with (a) and (b), with the worker's peak memory.

Run: ``make bench-throughput`` (``BENCH_ARGS="--images 500 --batch-sizes 1,8,16,32"`` sweeps the batch size,
e.g. on a GPU machine with ``--real-only``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.costs import Rates, cost_table
from tests.support.aws import CREDENTIALS, REGION, StepStack, free_port
from tests.support.faultproxy import FaultProxy, Latency
from tests.support.media import png
from tests.support.workers import REPO, WorkerProcess, wait_for
from worker.batching import Batcher
from worker.config import DEFAULT_CONCURRENCY
from worker.detection.engine import DEFAULT_DETECTORS
from worker.mediatype import require_media
from worker.processing import StepContext, StepOutput

STEP = "bench"

# Added latency per call, by service: lognormal around these medians (sigma 0.5: about a third of calls above 1.4 x).
# - SQS: "Typical latencies for SendMessage, ReceiveMessage, and DeleteMessage API requests are in the tens or
#   low hundreds of milliseconds" (Amazon SQS FAQs, https://aws.amazon.com/sqs/faqs/): 20 ms, the low end.
# - DynamoDB: "for most atomic operations, such as GetItem and PutItem, you can expect an average latency in
#   single-digit milliseconds" (AWS re:Post knowledge center, https://repost.aws/knowledge-center/dynamodb-high-latency),
#   measured at the service (SuccessfulRequestLatency, no network): 10 ms with the round trip.
# - S3: for small requests "the median latency is often in the tens of milliseconds" (Best Practices Design
#   Patterns: Optimizing Amazon S3 Performance, "Timeouts and Retries for Latency-Sensitive Applications",
#   https://docs.aws.amazon.com/whitepapers/latest/s3-optimizing-performance-best-practices/timeouts-and-retries-for-latency-sensitive-applications.html):
#   20 ms to the first byte.
AWS_LATENCY = {"sqs": Latency(0.020), "dynamodb": Latency(0.010), "s3": Latency(0.020)}
BATCHED = ("ReceiveMessage", "DeleteMessage", "DeleteMessageBatch", "ChangeMessageVisibility", "ChangeMessageVisibilityBatch")
SQS_BUDGET = 0.3  # receives, deletes and visibility changes together, per file


class SleepBatchProcessor:
    """Checks the image, then 'infers' it: ``batch_seconds`` per call of up to ``batch_size`` images (a GPU stand-in)."""

    name = "sleep-batch"
    version = "1"

    def __init__(self, options: Mapping[str, Any]):
        self.batch_seconds = float(options.get("batch_seconds", 0.1))
        self.batcher = Batcher(
            self._infer, int(options.get("batch_size", 16)), float(options.get("batch_wait_ms", 10)) / 1000, name="batch-sleep"
        )

    def _infer(self, items: list[str]) -> list[str]:
        if self.batch_seconds:
            time.sleep(self.batch_seconds)
        return items

    def process(self, path: Path, context: StepContext) -> StepOutput:
        require_media(path)
        digest = self.batcher.submit([hashlib.sha256(path.read_bytes()).hexdigest()])[0]
        return StepOutput({"sha256": digest})


def moto_server() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, **CREDENTIALS}
    process = subprocess.Popen(
        [sys.executable, "-m", "local_runtime.emulator", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    import urllib.request

    def up() -> bool:
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)  # noqa: S310 - loopback
        except OSError:
            return False
        return True

    wait_for(up, 30, what="moto server")
    return process, endpoint


def peak_rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc; 0 where there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ended(log: Path) -> int:
    """Steps done or failed so far in a worker's JSON log (counted in the text: parsing every line each poll costs the
    CPU the run is measuring)."""
    text = log.read_text()
    return text.count('"event": "step done"') + text.count('"event": "step failed"')


def through_worker(
    endpoint: str, images: list[bytes], env: dict[str, str], logs: Path, name: str, proxy: FaultProxy, emulator: int
) -> dict[str, Any]:
    """Images per second through one worker process, from its first claim to its last step done; its calls by API,
    and the CPU seconds per file of the worker, of the emulator (pid ``emulator``) and of this process (the proxy).

    The stack is made and filled through ``endpoint`` (uncounted); the worker calls through ``proxy``, which
    counts its calls until every message has left the queue (the deletes included).
    """
    stack = StepStack.create(endpoint, visibility_timeout=120)
    keys = [
        f"uploads/{name}/{index:04d}.png" if body[:4] == b"\x89PNG" else f"uploads/{name}/{index:04d}.jpg"
        for index, body in enumerate(images)
    ]
    for key, body in zip(keys, images, strict=True):
        stack.put(key, body)
    events = [json.dumps(stack.s3_event(key)) for key in keys]
    for start in range(0, len(events), 10):
        entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(events[start : start + 10])]
        stack.aws["sqs"].send_message_batch(QueueUrl=stack.queue_url, Entries=entries)
    before = Counter(proxy.calls)
    read_before = proxy.bytes_out["S3.GET"]
    cpu_before = (cpu_seconds(emulator), time.process_time())
    worker = WorkerProcess({**stack.worker_env(STEP), **env, "WAIT_TIME_SECONDS": "1", "AWS_ENDPOINT_URL": proxy.url}, logs / f"{name}.log")
    peak = 0.0
    try:
        deadline = time.monotonic() + 1800
        while ended(worker.log_path) < len(keys):
            if time.monotonic() > deadline or worker.process.poll() is not None:
                raise RuntimeError(f"{name}: the worker did not finish (see {logs / f'{name}.log'})")
            peak = max(peak, peak_rss_mib(worker.process.pid))
            time.sleep(0.5)
        peak = max(peak, peak_rss_mib(worker.process.pid))
        wait_for(lambda: stack.counts() == (0, 0), 60, what=f"{name}: the queue to empty")
        calls = Counter(proxy.calls)
        calls.subtract(before)
        bytes_read = proxy.bytes_out["S3.GET"] - read_before
        cpu = {
            "worker": cpu_seconds(worker.process.pid),
            "emulator": cpu_seconds(emulator) - cpu_before[0],
            "proxy": time.process_time() - cpu_before[1],
        }
    finally:
        worker.stop()
    claims = [entry["ts"] for entry in worker.events("step claimed")]
    done = [entry["ts"] for entry in worker.events("step done")]
    failed = len(worker.events("step failed"))
    seconds = max(done) - min(claims)
    return {
        "images_per_s": len(keys) / seconds,
        "seconds": seconds,
        "peak_mib": peak,
        "failed": failed,
        "calls": {api: count / len(keys) for api, count in calls.items() if count > 0},
        "read_ratio": bytes_read / sum(len(body) for body in images),  # S3 bytes the worker read over the files' bytes
        "cpu_ms": {part: 1000 * value / len(keys) for part, value in cpu.items()},
    }


def refused_claims(endpoint: str, proxy: FaultProxy, images: list[bytes], env: dict[str, str], logs: Path) -> dict[str, float]:
    """S3 delivers an event at least once: each image's event again, after its job is done. A duplicate's create is
    refused (the job exists), then its claim (the step is done); the calls it costs, counted per duplicate. A refusal
    returns the item it found (``ReturnValuesOnConditionCheckFailure``), so classifying it reads nothing, and a step
    found done is not tried as a takeover: the store used to try that second write, then read the job (2 refused
    claim writes and a GetItem where there is now 1 and none)."""
    stack = StepStack.create(endpoint, visibility_timeout=120)
    keys = [f"uploads/duplicates/{index:04d}.png" for index in range(len(images))]
    for key, body in zip(keys, images, strict=True):
        stack.put(key, body)
    events = [json.dumps(stack.s3_event(key)) for key in keys]
    worker = WorkerProcess(
        {**stack.worker_env(STEP), **env, "WAIT_TIME_SECONDS": "1", "AWS_ENDPOINT_URL": proxy.url}, logs / "duplicates.log"
    )
    try:
        for body in events:
            stack.aws["sqs"].send_message(QueueUrl=stack.queue_url, MessageBody=body)
        wait_for(lambda: ended(worker.log_path) == len(keys) and stack.counts() == (0, 0), 600, what="every first delivery done")
        calls, refused = Counter(proxy.calls), Counter(proxy.refused)
        for body in events:  # the duplicates
            stack.aws["sqs"].send_message(QueueUrl=stack.queue_url, MessageBody=body)
        wait_for(lambda: len(worker.events("step not claimed")) == len(keys) and stack.counts() == (0, 0), 600, what="every duplicate")
        calls = Counter(proxy.calls) - calls
        refused = Counter(proxy.refused) - refused
    finally:
        worker.stop()
    return {
        "duplicates": float(len(keys)),
        "GetItem": calls["GetItem"] / len(keys),
        "refused writes": sum(refused.values()) / len(keys),
        "writes": (calls["UpdateItem"] + calls["PutItem"]) / len(keys),
    }


def proxy_overhead_ms(endpoint: str, proxy: FaultProxy, calls: int = 40) -> tuple[float, float]:
    """Median ms of a small PutItem sent straight to the emulator and through the proxy (its latency off): what the
    proxy itself adds to each call, which should be a fraction of a millisecond, not the calls' cost."""
    import statistics

    import boto3

    stack = StepStack.create(endpoint)
    medians = []
    for url in (endpoint, proxy.url):
        table = boto3.resource("dynamodb", endpoint_url=url, region_name=REGION).Table(stack.table_name)
        took = []
        for index in range(calls):
            started = time.perf_counter()
            table.put_item(Item={"job_id": f"overhead-{index}", "through": url})
            took.append(time.perf_counter() - started)
        medians.append(1000 * statistics.median(took[calls // 4 :]))
    return medians[0], medians[1]


def processor_alone(count: int, options: Mapping[str, Any], threads: int) -> float:
    processor = SleepBatchProcessor(options)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda n: processor.batcher.submit([str(n)]), range(count)))
    return count / (time.perf_counter() - started)


def small_images(count: int) -> list[bytes]:
    return [png(32 + index % 16, 32 + index % 8, (index % 256, (index * 3) % 256, (index * 7) % 256)) for index in range(count)]


def real_images(count: int, workdir: Path) -> list[bytes]:
    from tools import sample_media

    subjects = ["astronaut", "coffee", "chelsea"]
    images = []
    for index in range(count):
        path = sample_media.scene_image(workdir / f"real-{index}.jpg", subject=subjects[index % len(subjects)])
        images.append(path.read_bytes())
    return images


def verdict(value: float, target: float) -> str:
    return f"{'met' if value >= target else 'MISSED'} ({value:.2f} vs target {target:.2f})"


def per_file(calls: Mapping[str, float]) -> str:
    return ", ".join(f"{api} {count:.2f}" for api, count in sorted(calls.items(), key=lambda item: -item[1]))


def batched_share(calls: Mapping[str, float]) -> float:
    return sum(calls.get(api, 0.0) for api in BATCHED)


def synthetic(
    endpoint: str,
    proxy: FaultProxy,
    images: list[bytes],
    base: dict[str, str],
    options: dict[str, Any],
    args: argparse.Namespace,
    logs: Path,
    targets: bool,
    emulator: int,
) -> tuple[dict[str, Any], float]:
    """(a), (b), (c) and (d) through the proxy as it is set now; prints them, the ratios (against the targets when
    ``targets``) and the calls per file."""
    tag = "lat" if targets else "nolat"

    def measure(processor_options: Mapping[str, Any], concurrency: int, name: str) -> dict[str, Any]:
        env = {**base, "PROCESSOR_OPTIONS": json.dumps(processor_options), "CONCURRENCY": str(concurrency)}
        return through_worker(endpoint, images, env, logs, f"{name}-{tag}", proxy, emulator)

    a = measure(options, 1, "a")
    b = measure(options, args.concurrency, "b")
    c = processor_alone(args.images, options, threads=args.concurrency)
    d = measure({**options, "batch_seconds": 0}, args.concurrency, "d")
    for label, run in (("(a) sequential worker (CONCURRENCY=1)", a), (f"(b) {args.concurrency} in flight, batched across jobs", b)):
        print(f"  {label:<47}{run['images_per_s']:7.1f} images/s  peak {run['peak_mib']:.0f} MiB")
    print(f"  {'(c) the processor alone (its bound)':<47}{c:7.1f} images/s")
    print(f"  {f'(d) {args.concurrency} in flight, zero-cost processor (I/O)':<47}{d['images_per_s']:7.1f} images/s")
    bound = min(c, d["images_per_s"])
    ratios = (("(b)/(a)", b["images_per_s"] / a["images_per_s"], 5.0), ("(b)/min(c, d)", b["images_per_s"] / bound, 0.7))
    for name, value, target in ratios:
        if targets:
            print(f"  {name} = {value:.2f}: {verdict(value, target)}")
        else:
            print(f"  {name} = {value:.2f} (no target without latency: the emulator's CPU is the bound; the targets are set with it)")
    if targets and b["images_per_s"] < 5 * a["images_per_s"] and d["images_per_s"] < 5 * a["images_per_s"]:
        print(
            f"    why: 5 x (a) = {5 * a['images_per_s']:.1f} images/s is past (d) = {d['images_per_s']:.1f}, the rate at which this "
            "machine's cores answer the calls at all (see the CPU per file below): no worker reaches it here"
        )
    for label, run in (("(a)", a), ("(b)", b), ("(d)", d)):
        print(f"  AWS calls per file {label}: {sum(run['calls'].values()):.2f} ({per_file(run['calls'])})")
    print(f"  S3 bytes read per file (b): {b['read_ratio']:.2f}x the file (one GET of the whole input)")
    for label, run in (("(b)", b), ("(d)", d)):
        cpu = run["cpu_ms"]
        print(
            f"  CPU ms per file {label}: worker {cpu['worker']:.1f}, emulator (moto) {cpu['emulator']:.1f}, "
            f"this process (fault proxy, polling) {cpu['proxy']:.1f}; {os.cpu_count()} cores shared with other work"
        )
    share = batched_share(b["calls"])
    budget = "met" if share < SQS_BUDGET else "MISSED"
    print(
        f"  receives + deletes + visibility changes per file (b), CONCURRENCY {args.concurrency}: {share:.3f}: "
        f"{budget} (target under {SQS_BUDGET})"
        + ("" if args.concurrency == DEFAULT_CONCURRENCY else f" (the target is set at {DEFAULT_CONCURRENCY})")
    )
    return b, c


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--batch-seconds", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="messages in flight for (b) and (d)")
    parser.add_argument("--real-images", type=int, default=24, help="images for the real-detector runs (0: skip)")
    parser.add_argument("--batch-sizes", default="", help="comma-separated batch sizes: sweep the real detectors over them")
    parser.add_argument("--real-only", action="store_true", help="only the real detectors (e.g. on a GPU machine)")
    parser.add_argument(
        "--latency", choices=("both", "off", "on"), default="both", help="AWS-like latency per call: runs without, with, or both"
    )
    args = parser.parse_args(argv)
    for name, value in CREDENTIALS.items():
        os.environ.setdefault(name, value)
    logs = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    server, endpoint = moto_server()
    proxy = FaultProxy(endpoint, seed=23)
    sleepy = "bench.throughput:SleepBatchProcessor"
    options = {"batch_seconds": args.batch_seconds, "batch_size": args.batch_size, "batch_wait_ms": 10}
    base = {"PYTHONPATH": str(REPO), "PROCESSOR": sleepy}
    try:
        direct, proxied = proxy_overhead_ms(endpoint, proxy)
        print(f"a PutItem straight to the emulator: {direct:.1f} ms; through the fault proxy, no added latency: {proxied:.1f} ms\n")
        if not args.real_only:
            images = small_images(args.images)
            runs: dict[str, list[tuple[str, dict[str, Latency]]]] = {
                "off": [("without added latency", {})],
                "on": [("with AWS-like latency", AWS_LATENCY)],
            }
            modes = runs["off"] + runs["on"] if args.latency == "both" else runs[args.latency]
            measured: dict[str, Any] | None = None
            for title, latency in modes:
                proxy.latency = dict(latency)
                medians = ", ".join(f"{service} {value.median * 1000:.0f} ms" for service, value in latency.items()) or "none"
                print(
                    f"{args.images} small images, one worker, processor: {args.batch_seconds * 1000:.0f} ms per call of up to "
                    f"{args.batch_size}; {title} (medians: {medians})"
                )
                measured, _ = synthetic(endpoint, proxy, images, base, options, args, logs, targets=bool(latency), emulator=server.pid)
            proxy.latency = {}
            duplicates = refused_claims(endpoint, proxy, images[:50], {**base, "PROCESSOR_OPTIONS": json.dumps(options)}, logs)
            print(
                f"  a duplicate S3 event per file, after its job was done ({duplicates['duplicates']:.0f} files): per duplicate "
                f"{duplicates['GetItem']:.2f} GetItem, {duplicates['writes']:.2f} writes ({duplicates['refused writes']:.2f} refused: "
                "the create and the claim); reading the refusal's item from the refusal saves the GetItem and the takeover's write "
                "the store made before (the same run on the commit before: 3 writes and 1.00 GetItem per duplicate)"
            )
            if measured is not None:
                print(cost_table(measured["calls"], Rates(images_per_second=measured["images_per_s"]), where="(b)'s rate here"))
                print("  (b)'s rate is a 100 ms-per-batch stand-in on this CPU; on a GPU the rate comes from a GPU run (the formula)")
        if args.real_images:
            real = real_images(args.real_images, logs)
            detect = {"PYTHONPATH": str(REPO), "PROCESSOR": "detect", "TF_CPP_MIN_LOG_LEVEL": "2"}
            sizes = [int(size) for size in args.batch_sizes.split(",") if size] or [8]
            names = " + ".join(spec["name"] for spec in DEFAULT_DETECTORS)
            print(f"{args.real_images} photos (astronaut, coffee, chelsea scenes), the engine's defaults ({names}), this machine's CPU")
            for size in sizes:
                detectors = {"detectors": [dict(spec) for spec in DEFAULT_DETECTORS], "batch_size": size}
                seq = through_worker(
                    endpoint,
                    real,
                    {**detect, "PROCESSOR_OPTIONS": json.dumps(detectors), "CONCURRENCY": "1"},
                    logs,
                    f"real-a-{size}",
                    proxy,
                    server.pid,
                )
                par = through_worker(
                    endpoint,
                    real,
                    {**detect, "PROCESSOR_OPTIONS": json.dumps(detectors), "CONCURRENCY": str(args.concurrency)},
                    logs,
                    f"real-b-{size}",
                    proxy,
                    server.pid,
                )
                ratio = par["images_per_s"] / seq["images_per_s"]
                print(
                    f"  batch {size:3d}: (a) {seq['images_per_s']:6.2f} images/s, peak {seq['peak_mib']:.0f} MiB   "
                    f"(b) {par['images_per_s']:6.2f} images/s, peak {par['peak_mib']:.0f} MiB   (b)/(a) {ratio:.2f}"
                )
                print(f"    AWS calls per photo (b): {sum(par['calls'].values()):.2f} ({per_file(par['calls'])})")
                print(cost_table(par["calls"], Rates(images_per_second=par["images_per_s"]), where="(b) on this CPU"))
    finally:
        proxy.close()
        server.terminate()
        server.wait()
    print(f"worker logs: {logs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
