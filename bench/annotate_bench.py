"""Annotated video: what it costs beside the detection it shows, and what the merge's join costs.

Generates a video from scikit-image's photos (nothing downloaded), then in one process, side by side:

- detection: the ``detect`` processor (people-hog and faces-mtcnn, one sampled frame a second) over the video;
- annotation: the annotated H.264 MP4 of the same video from that document (every frame decoded, drawn and
  encoded; ``worker/annotate.py``), its size and encode time;
- segments: the same video annotated in ``--segments`` pieces (as the segments of a split step do), then
  joined packet by packet as the merge joins them: the join's time against a whole encode.

Targets: annotation (decode, draw and encode) at most half the detection's CPU time (CPU seconds, which a
machine shared with other work moves much less than wall time; both are printed); the join at most a tenth
of the whole annotation's wall time. A missed target is printed as missed, with the figures; nothing is tuned away.

Run: ``make bench-annotate`` or ``python -m bench.annotate_bench --seconds 20 --size 1280x720``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ANNOTATE_TARGET = 0.5  # annotation time / detection time
JOIN_TARGET = 0.1  # join time / whole-video annotation time
DETECTORS = [{"name": "people-hog"}, {"name": "faces-mtcnn"}]


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def verdict(ratio: float, target: float) -> str:
    return f"target <= {target:g}: {'met' if ratio <= target else 'MISSED'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="video length")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--sample-fps", type=float, default=1.0)
    parser.add_argument("--segments", type=int, default=4, help="pieces for the join measurement")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))

    from pipeline_core.segment_plan import Segment
    from tools import sample_media
    from worker.annotate import ANNOTATED_VIDEO, annotate_output, annotate_video, concat_videos, label_colours, labels_of
    from worker.processing import StepContext
    from worker.registry import load_processor

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        frames = int(args.seconds * args.fps)
        video = sample_media.video(folder / "bench.mp4", frames=frames, fps=args.fps, size=(width, height))
        megabytes = video.stat().st_size / 1e6
        print(f"video: {width}x{height}, {args.fps:g} fps, {args.seconds:g} s ({frames} frames, {megabytes:.1f} MB MPEG-4)")
        print(f"detectors: {', '.join(d['name'] for d in DETECTORS)}, sampling {args.sample_fps:g}/s; CPU only\n")
        processor = load_processor("detect", {"detectors": DETECTORS, "sample_fps": args.sample_fps})
        context = StepContext("bench", "detect", "b", video.name, "v", 1, folder)
        processor.process(video, context)  # warm-up: model loading is not detection time

        started, cpu = time.perf_counter(), cpu_seconds()
        output = processor.process(video, context)
        detect_wall, detect_cpu = time.perf_counter() - started, cpu_seconds() - cpu

        started, cpu = time.perf_counter(), cpu_seconds()
        annotated = annotate_output(video, context, output)
        annotate_wall, annotate_cpu = time.perf_counter() - started, cpu_seconds() - cpu
        stats = annotated.document["annotation"]
        if "error" in stats:
            print(f"annotation failed: {stats['error']}")
            return 1

        document = annotated.document
        step = int(document["sampling"]["step"])
        colours = label_colours(labels_of(document))
        bounds = [round(i * frames / args.segments) for i in range(args.segments + 1)]
        pieces = []
        started = time.perf_counter()
        for index in range(args.segments):
            start, end = bounds[index], bounds[index + 1]
            segment = Segment(index, args.segments, start, end, start / args.fps, end / args.fps)
            inside = [frame for frame in document["frames"] if segment.contains(frame["index"])]
            piece = folder / f"segment-{index}.mp4"
            annotate_video(video, inside, args.fps, colours, piece, start=segment.start_frame, end=segment.end_frame, step=step)
            pieces.append(piece)
        segments_wall = time.perf_counter() - started
        started = time.perf_counter()
        joined = concat_videos(pieces, folder / "joined.mp4")
        join_wall = time.perf_counter() - started

        rows = [
            ("detection (decode sampled frames, both detectors)", detect_wall, detect_cpu),
            (f"annotation: {stats['frames']} frames decoded, drawn, encoded (H.264)", annotate_wall, annotate_cpu),
            ("  of which libx264 encoding", float(stats["encode_seconds"]), None),
            (f"annotation in {args.segments} segments, one after the other", segments_wall, None),
            (f"join of the {args.segments} segments' files (no re-encoding)", join_wall, None),
        ]
        print(f"{'measurement':<62}{'wall s':>9}{'CPU s':>9}")
        for name, wall, cpu_used in rows:
            print(f"{name:<62}{wall:>9.2f}{'' if cpu_used is None else f'{cpu_used:.2f}':>9}")
        size = stats["bytes"]
        print(f"\nannotated.mp4: {size / 1e6:.2f} MB ({size * 8 / args.seconds / 1e6:.2f} Mbit/s), {stats['width']}x{stats['height']}")
        print(f"joined file: {joined} packets, {(folder / 'joined.mp4').stat().st_size / 1e6:.2f} MB ({ANNOTATED_VIDEO} of a split video)")
        ratio = annotate_wall / detect_wall
        cpu_ratio = annotate_cpu / detect_cpu if detect_cpu else float("inf")
        print(f"\nannotation / detection = {ratio:.2f} wall, {cpu_ratio:.2f} CPU (CPU time: {verdict(cpu_ratio, ANNOTATE_TARGET)})")
        join_ratio = join_wall / annotate_wall
        print(f"join / whole annotation = {join_ratio:.3f} ({verdict(join_ratio, JOIN_TARGET)})")
        if cpu_ratio > ANNOTATE_TARGET:
            print(
                "  missed: on a CPU-only machine detection is slow, so this ratio is favourable; on a GPU detection is"
                " faster and annotation (CPU) weighs more. Missed here means decode+encode outweigh CPU detection."
            )
        return 0


if __name__ == "__main__":
    sys.exit(main())
