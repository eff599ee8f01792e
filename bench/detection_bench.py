"""Detection throughput: the original per-frame loop against this engine, side by side in one run.

Generates a video from scikit-image's photos (nothing downloaded), then measures in separate
processes, so each peak memory figure is its own:

- naive: decode every frame with read(), call each model on each sampled frame, one at a time,
  at full resolution, sequentially (the original guide's loop);
- engine: worker.detection at the same sampling (grab() skips, background decoding, batches,
  frames scaled to max_side for inference);
- engine at full size (max_side off), to separate what batching and skipping buy from what
  the smaller inference size buys;
- bounds: decode-only and inference-only frames per second of the engine's own stages.

Run: ``make bench`` or ``python -m bench.detection_bench --batch-sizes 1,8,32``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DETECTORS = [{"name": "people-hog"}, {"name": "faces-mtcnn"}]


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _naive(video: str, step: int) -> tuple[float, int, float]:
    import cv2

    from worker.detection.detectors import HogPeopleDetector, MtcnnFaceDetector

    people, faces = HogPeopleDetector({}), MtcnnFaceDetector({})
    capture = cv2.VideoCapture(video)
    started, index, sampled = time.perf_counter(), 0, 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index % step == 0:
            people.detect([frame])
            faces.detect([cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)])
            sampled += 1
        index += 1
    return time.perf_counter() - started, sampled, _peak_mib()


def _engine(video: str, options: dict[str, Any]) -> tuple[float, int, float]:
    from worker.detection.engine import DetectionProcessor
    from worker.processors import StepContext

    processor = DetectionProcessor({"detectors": DETECTORS, **options})
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        output = processor.process(Path(video), StepContext("0" * 32, "bench", "b", "k", "v", 1, Path(tmp)))
        elapsed = time.perf_counter() - started
    return elapsed, output.document["sampling"]["sampled_frames"], _peak_mib()


def _decode_only(video: str, options: dict[str, Any]) -> tuple[float, int, float]:
    from worker.detection.media import FrameReader, Sampling, probe

    path = Path(video)
    info = probe(path)
    started = time.perf_counter()
    frames = sum(1 for _ in FrameReader(path, info, Sampling(per_second=options["sample_fps"]), 10**9))
    return time.perf_counter() - started, frames, _peak_mib()


def _inference_only(video: str, options: dict[str, Any]) -> tuple[float, int, float]:
    from worker.detection.engine import DetectionProcessor, _Run
    from worker.detection.media import FrameReader, Sampling, probe

    path = Path(video)
    info = probe(path)
    frames = list(FrameReader(path, info, Sampling(per_second=options["sample_fps"]), 10**9))
    processor = DetectionProcessor({"detectors": DETECTORS, **options})
    run = _Run(processor, info)
    batch_size = processor.batch_size
    started = time.perf_counter()
    for start in range(0, len(frames), batch_size):
        run.infer(frames[start : start + batch_size])
    return time.perf_counter() - started, len(frames), _peak_mib()


def measure(function: Any, *args: Any) -> tuple[float, int, float]:
    """Run one measurement in a fresh process: its own imports, its own peak memory."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="video length")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--sample-fps", type=float, default=1.0)
    parser.add_argument("--max-side", type=int, default=960)
    parser.add_argument("--batch-sizes", default="8", help="comma-separated, e.g. 1,8,32")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    batch_sizes = [int(v) for v in args.batch_sizes.split(",")]

    from tools import sample_media

    with tempfile.TemporaryDirectory() as tmp:
        video = str(sample_media.video(Path(tmp) / "bench.mp4", frames=int(args.seconds * args.fps), fps=args.fps, size=(width, height)))
        step = max(1, round(args.fps / args.sample_fps))
        print(f"video: {width}x{height}, {args.fps:g} fps, {args.seconds:g} s; sampling {args.sample_fps:g}/s (every {step}th frame)")
        print(f"detectors: {', '.join(d['name'] for d in DETECTORS)}; CPU only unless TensorFlow sees a GPU\n")
        rows: list[tuple[str, float, float]] = []

        def record(label: str, result: tuple[float, int, float]) -> float:
            seconds, frames, peak = result
            fps = frames / seconds
            rows.append((label, fps, peak))
            return fps

        naive = record("naive loop (read every frame, one call per model per frame, full size)", measure(_naive, video, step))
        summary = []
        for batch in batch_sizes:
            options = {"sample_fps": args.sample_fps, "batch_size": batch, "max_side": args.max_side}
            engine = record(f"engine, batch {batch}, max_side {args.max_side}", measure(_engine, video, options))
            full = record(f"engine, batch {batch}, full size", measure(_engine, video, {**options, "max_side": None}))
            decode = record("bound: decode only (grab/read, background thread)", measure(_decode_only, video, options))
            inference = record(f"bound: inference only, batch {batch}, max_side {args.max_side}", measure(_inference_only, video, options))
            slower = min(decode, inference)
            summary.append(
                f"batch {batch}: engine / naive = {engine / naive:.2f}x (target >= 3); full-size engine / naive = {full / naive:.2f}x; "
                f"engine / slower bound = {engine / slower:.2f} (target >= 0.8)"
            )
        print("| measurement | sampled frames/s | peak RSS MiB |")
        print("| --- | ---: | ---: |")
        for label, fps, peak in rows:
            print(f"| {label} | {fps:.2f} | {peak:.0f} |")
        print()
        print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
