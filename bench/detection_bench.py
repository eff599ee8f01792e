"""Detection throughput: the original per-frame loop against this engine, side by side in one run.

Generates a video from scikit-image's photos (nothing downloaded), then measures in separate
processes, so each peak memory figure is its own:

- naive: decode every frame with read(), call each model on each sampled frame, one at a time,
  at full resolution, sequentially (the original guide's loop);
- engine: worker.detection at the same sampling (grab() skips, background decoding, batches,
  frames scaled to max_side for inference);
- the engine with the previous defaults (people-hog + faces-mtcnn), beside the new ones
  (people-ssdlite + faces-mtcnn, the engine's DEFAULT_DETECTORS) that every other row runs;
- engine at full size (max_side off), to separate what batching and skipping buy from what
  the smaller inference size buys;
- bounds: decode-only and inference-only frames per second of the engine's own stages;
- accuracy of the default max_side: on the sample media and the bench video, the detections at
  max_side against those at full size, frame by frame (same count per label, every box matched at
  IoU >= 0.5); the share of frames that agree, target >= 95 %.

Timings are the best of ``--repeats`` runs, interleaved, so that a busy machine slows every
configuration alike. The batch size is the engine's own choice ("auto": one frame per call on a
CPU, what fits the card's memory on a GPU) unless ``--batch-sizes`` names sizes to sweep.

Run: ``make bench`` or ``python -m bench.detection_bench --batch-sizes auto,1,8,32``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import resource
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from worker.detection.engine import DEFAULT_DETECTORS

DETECTORS = [dict(spec) for spec in DEFAULT_DETECTORS]  # the engine's defaults: people-ssdlite and faces-mtcnn
PREVIOUS = [{"name": "people-hog"}, {"name": "faces-mtcnn"}]  # the defaults before people-ssdlite, side by side
MATCH_IOU = 0.5
AGREEMENT_TARGET = 0.95


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two x_min, y_min, x_max, y_max boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def frame_agrees(scaled: Sequence[Mapping[str, Any]], full: Sequence[Mapping[str, Any]], threshold: float = MATCH_IOU) -> bool:
    """Same count per label, and each box of one run paired with a distinct box of the other at IoU >= threshold."""
    labels = {d["label"] for d in scaled} | {d["label"] for d in full}
    for label in labels:
        ours = [d["box"] for d in scaled if d["label"] == label]
        theirs = [d["box"] for d in full if d["label"] == label]
        if len(ours) != len(theirs):
            return False
        pairs = sorted(((iou(a, b), i, j) for i, a in enumerate(ours) for j, b in enumerate(theirs)), reverse=True)
        used_i: set[int] = set()
        used_j: set[int] = set()
        for overlap, i, j in pairs:  # greedy, best overlaps first
            if overlap >= threshold and i not in used_i and j not in used_j:
                used_i.add(i)
                used_j.add(j)
        if len(used_i) != len(ours):
            return False
    return True


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    """CPU time of this process, every thread: less swayed than wall time by other work on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _naive(video: str, step: int) -> tuple[float, int, float, float]:
    import cv2

    from worker.detection.model import build_detector

    detectors = [build_detector(spec) for spec in DETECTORS]
    capture = cv2.VideoCapture(video)
    started, cpu, index, sampled = time.perf_counter(), _cpu_seconds(), 0, 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index % step == 0:
            for detector in detectors:
                detector.detect([frame if detector.colour == "bgr" else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)])
            sampled += 1
        index += 1
    return time.perf_counter() - started, sampled, _peak_mib(), _cpu_seconds() - cpu


def _engine(video: str, options: dict[str, Any]) -> tuple[float, int, float, float]:
    seconds, document, cpu = _engine_document(video, options)
    return seconds, document["sampling"]["sampled_frames"], _peak_mib(), cpu


def _engine_document(path: str, options: dict[str, Any]) -> tuple[float, dict[str, Any], float]:
    """Wall seconds, result document and CPU seconds of one file through the engine (detectors built before the clock)."""
    from worker.detection.engine import DetectionProcessor
    from worker.processing import StepContext

    processor = DetectionProcessor({"detectors": DETECTORS, **options})  # options may name other detectors
    with tempfile.TemporaryDirectory() as tmp:
        started, cpu = time.perf_counter(), _cpu_seconds()
        output = processor.process(Path(path), StepContext("0" * 32, "bench", "b", "k", "v", 1, Path(tmp)))
        return time.perf_counter() - started, output.document, _cpu_seconds() - cpu


def _agreement(path: str, options: dict[str, Any], max_side: int) -> tuple[int, dict[str, int], int, str, int, int]:
    """Frames that agree at max_side and at full size (all labels, and per label), frames, devices, batch, longest side."""
    _, scaled, _ = _engine_document(path, {**options, "max_side": max_side})
    _, full, _ = _engine_document(path, {**options, "max_side": None})
    pairs = list(zip(scaled["frames"], full["frames"], strict=True))
    agree = sum(1 for a, b in pairs if frame_agrees(a["detections"], b["detections"]))
    labels = sorted({label for model in scaled["models"] for label in model["labels"]})
    per_label = {
        label: sum(
            1
            for a, b in pairs
            if frame_agrees([d for d in a["detections"] if d["label"] == label], [d for d in b["detections"] if d["label"] == label])
        )
        for label in labels
    }
    devices = ", ".join(f"{m['name']} {m['device']}" for m in scaled["models"])
    side = max(scaled["media"]["width"], scaled["media"]["height"])
    return agree, per_label, len(pairs), devices, scaled["sampling"]["batch_size"], side


def _decode_only(video: str, options: dict[str, Any]) -> tuple[float, int, float, float]:
    from worker.detection.media import FrameReader, Sampling, probe

    path = Path(video)
    info = probe(path)
    started, cpu = time.perf_counter(), _cpu_seconds()
    frames = sum(1 for _ in FrameReader(path, info, Sampling(per_second=options["sample_fps"]), 10**9))
    return time.perf_counter() - started, frames, _peak_mib(), _cpu_seconds() - cpu


def _inference_only(video: str, options: dict[str, Any]) -> tuple[float, int, float, float]:
    from worker.detection.engine import DetectionProcessor, _Run
    from worker.detection.media import FrameReader, Sampling, probe

    path = Path(video)
    info = probe(path)
    frames = list(FrameReader(path, info, Sampling(per_second=options["sample_fps"]), 10**9))
    processor = DetectionProcessor({"detectors": DETECTORS, **options})
    run = _Run(processor, info)
    batch_size = processor.batch_for(info)
    started, cpu = time.perf_counter(), _cpu_seconds()
    for start in range(0, len(frames), batch_size):
        run.infer(frames[start : start + batch_size])
    return time.perf_counter() - started, len(frames), _peak_mib(), _cpu_seconds() - cpu


def _devices() -> list[str]:
    from worker.detection.model import build_detector

    return [f"{spec['name']} on {build_detector(spec).device}" for spec in DETECTORS]


def where_detectors_run() -> list[str]:
    """Where the default detectors run on this machine (a fresh process: TensorFlow's own view)."""
    return list(measure(_devices))


def measure(function: Any, *args: Any) -> Any:
    """Run one measurement in a fresh process: its own imports, its own peak memory."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


def _sample_media(folder: Path, video: Path) -> list[Path]:
    """The demo's sample media, a full-HD photo scene, and the bench video: what the max_side check runs on."""
    from tools import sample_media

    return [
        sample_media.scene_image(folder / "person.jpg"),
        sample_media.image(folder / "portrait.jpg"),
        sample_media.image(folder / "coffee.png", "coffee"),
        sample_media.street(folder / "street.mp4", seconds=5),
        sample_media.scene_image(folder / "person-1080p.jpg", size=(1920, 1080), height=760),
        video,
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="video length")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--sample-fps", type=float, default=1.0)
    parser.add_argument("--max-side", type=int, default=960)
    parser.add_argument("--batch-sizes", default="auto", help="auto (the engine's choice) and/or numbers, e.g. auto,1,8,32")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each configuration, interleaved; the best counts")
    parser.add_argument("--no-accuracy", action="store_true", help="skip the max_side accuracy check")
    parser.add_argument("--accuracy-only", action="store_true", help="only the max_side accuracy check")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    batch_sizes: list[int | str] = [v if v == "auto" else int(v) for v in args.batch_sizes.split(",")]

    from tools import sample_media

    with tempfile.TemporaryDirectory() as tmp:
        video = str(sample_media.video(Path(tmp) / "bench.mp4", frames=int(args.seconds * args.fps), fps=args.fps, size=(width, height)))
        step = max(1, round(args.fps / args.sample_fps))
        print(f"video: {width}x{height}, {args.fps:g} fps, {args.seconds:g} s; sampling {args.sample_fps:g}/s (every {step}th frame)")
        print(f"detectors: {', '.join(d['name'] for d in DETECTORS)}; best of {args.repeats} interleaved runs\n")

        if not args.accuracy_only:
            configurations: list[tuple[str, Any, tuple[Any, ...]]] = [
                ("naive loop (read every frame, one call per model per frame, full size)", _naive, (video, step))
            ]
            for batch in batch_sizes:
                options = {"sample_fps": args.sample_fps, "batch_size": batch, "max_side": args.max_side}
                configurations.append((f"engine, batch {batch}, max_side {args.max_side}", _engine, (video, options)))
                configurations.append((f"engine, batch {batch}, full size", _engine, (video, {**options, "max_side": None})))
                previous = (video, {**options, "detectors": PREVIOUS})
                label = f"engine, previous defaults (HOG + MTCNN), batch {batch}, max_side {args.max_side}"
                configurations.append((label, _engine, previous))
            best: dict[str, tuple[float, int, float, float]] = {}
            for _ in range(max(1, args.repeats)):
                for label, function, arguments in configurations:
                    result = measure(function, *arguments)
                    if label not in best or result[0] < best[label][0]:
                        best[label] = result
            rows = [(label, frames / seconds, cpu / frames, peak) for label, (seconds, frames, peak, cpu) in best.items()]
            fps = {label: rate for label, rate, _, _ in rows}
            cpu_per_frame = {label: per_frame for label, _, per_frame, _ in rows}
            naive = fps[configurations[0][0]]
            summary = []
            for batch in batch_sizes:
                options = {"sample_fps": args.sample_fps, "batch_size": batch, "max_side": args.max_side}
                decode = measure(_decode_only, video, options)
                inference = measure(_inference_only, video, options)
                for label, (seconds, frames, peak, cpu) in (
                    ("bound: decode only (grab/read, background thread)", decode),
                    (f"bound: inference only, batch {batch}, max_side {args.max_side}", inference),
                ):
                    rows.append((label, frames / seconds, cpu / frames, peak))
                engine = fps[f"engine, batch {batch}, max_side {args.max_side}"]
                full = fps[f"engine, batch {batch}, full size"]
                full_cpu = cpu_per_frame[f"engine, batch {batch}, full size"]
                naive_cpu = cpu_per_frame[configurations[0][0]]
                slower = min(decode[1] / decode[0], inference[1] / inference[0])
                previous = fps[f"engine, previous defaults (HOG + MTCNN), batch {batch}, max_side {args.max_side}"]
                summary.append(
                    f"batch {batch}: engine with {' + '.join(d['name'] for d in DETECTORS)} / with people-hog + faces-mtcnn = "
                    f"{engine / previous:.2f}x ({engine:.2f} against {previous:.2f} sampled frames/s)"
                )
                summary.append(
                    f"batch {batch}: engine / naive = {engine / naive:.2f}x (target >= 3); "
                    f"at equal work (full size) engine / naive = {full / naive:.2f}x by wall time, "
                    f"{naive_cpu / full_cpu:.2f}x by CPU time (target >= 1.00: {'met' if full >= naive else 'MISSED'}); "
                    f"engine / slower bound = {engine / slower:.2f} (target >= 0.8)"
                )
            print("| measurement | sampled frames/s | CPU s per frame | peak RSS MiB |")
            print("| --- | ---: | ---: | ---: |")
            for label, rate, per_frame, peak in rows:
                print(f"| {label} | {rate:.2f} | {per_frame:.2f} | {peak:.0f} |")
            print()
            print("\n".join(summary))
            if 1 in batch_sizes and 32 in batch_sizes:  # what batching buys on a GPU (on a CPU, MTCNN only costs memory)
                ratio = fps[f"engine, batch 32, max_side {args.max_side}"] / fps[f"engine, batch 1, max_side {args.max_side}"]
                print(f"engine batch 32 / batch 1 = {ratio:.2f}x sampled frames/s ({', '.join(where_detectors_run())})")

        if not args.no_accuracy:
            print(f"\nmax_side {args.max_side} against full size: same count per label, every box matched at IoU >= {MATCH_IOU}\n")
            print("| media | longest side | models | batch | frames that agree | per label |")
            print("| --- | ---: | --- | ---: | ---: | --- |")
            total_agree = total = 0
            label_agree: dict[str, int] = {}
            for path in _sample_media(Path(tmp), Path(video)):
                options = {"sample_fps": args.sample_fps}
                agree, per_label, frames, devices, batch, side = measure(_agreement, str(path), options, args.max_side)
                total_agree, total = total_agree + agree, total + frames
                for label, count in per_label.items():
                    label_agree[label] = label_agree.get(label, 0) + count
                note = "" if side > args.max_side else " (not scaled: within max_side)"
                labels = ", ".join(f"{label} {count}/{frames}" for label, count in per_label.items())
                print(f"| {path.name} | {side}{note} | {devices} | {batch} | {agree} / {frames} ({agree / frames:.0%}) | {labels} |")
            share = total_agree / max(1, total)
            verdict = "met" if share >= AGREEMENT_TARGET else "MISSED"
            print(f"\nall media: {total_agree} / {total} frames agree = {share:.1%} (target >= {AGREEMENT_TARGET:.0%}: {verdict})")
            for label, count in label_agree.items():
                print(f"  {label} alone: {count} / {total} = {count / max(1, total):.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
