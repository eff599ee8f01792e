"""The ``detect`` processor: sampled frames, batched through every configured detector, into one result.

Options (``PROCESSOR_OPTIONS``)::

    {"detectors": [{"name": "people-ssdlite"}, {"name": "faces-mtcnn"}],  # run together over the same frames
     "sample_fps": 1.0,            # or "every_n_frames": 30
     "batch_size": "auto",         # or a number; auto: 1 on a CPU, on a GPU what fits its memory (batch_size.py)
     "batch_wait_ms": 10,          # frames of several files in flight share a batch (same size only)
     "max_frames": 3600, "queue_frames": 32,
     "max_frames_in_memory": 64,   # decoded frames this worker holds at once, over every file in flight
     "max_side": 960,              # frames larger than this are scaled down for inference (null: full size)
     "max_pixels": 100000000,      # larger images or video frames are refused before decoding (decompression bombs)
     "contact_sheet_frames": 12, "thumbnail_width": 320}
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2

from pipeline_core.segment_plan import VideoTimeline
from worker.batching import Batcher
from worker.detection.batch_size import choose_batch_size, gpu_memory_mib
from worker.detection.media import Frame, FrameReader, MediaInfo, Sampling, Source, media_kind, probe
from worker.detection.merge import TILES, merge_segments, segment_tiles
from worker.detection.model import Detection, Detector, build_detector
from worker.detection.pictures import EvenSample, contact_sheet, label_colours, thumbnail, timeline
from worker.mediatype import DEFAULT_MAX_PIXELS
from worker.processing import SegmentPart, StepContext, StepOutput

# Deep people (SSDLite) and faces (MTCNN): both TensorFlow, both on the GPU when there is one. people-hog
# (OpenCV, CPU only) stays available by name.
DEFAULT_DETECTORS = ({"name": "people-ssdlite"}, {"name": "faces-mtcnn"})
CONTACT_SHEET = "contact-sheet.jpg"
TIMELINE = "timeline.png"

log = logging.getLogger(__name__)


def device_of(detector: Detector) -> str:
    """Where a detector runs ("CPU", "GPU:0"); "unknown" for a plugin detector that does not say."""
    return str(getattr(detector, "device", None) or "unknown")


def model_record(detector: Detector) -> dict[str, Any]:
    """A detector as result.json lists it; with the sha256 of its weights when the detector checked them."""
    record = {"name": detector.name, "version": detector.version, "labels": list(detector.labels), "device": device_of(detector)}
    sha256 = getattr(detector, "sha256", None)
    if sha256:
        record["sha256"] = str(sha256)
    return record


class DetectionProcessor:
    name = "detect"
    version = "1"

    def __init__(self, options: Mapping[str, Any]):
        specs = options.get("detectors") or DEFAULT_DETECTORS
        self.detectors: list[Detector] = [build_detector(spec) for spec in specs]
        every_n = options.get("every_n_frames")
        self.sampling = Sampling(per_second=None if every_n else float(options.get("sample_fps", 1.0)), every_n_frames=every_n)
        batch_size = options.get("batch_size", "auto")
        self.batch_size: int | None = None if batch_size in (None, "auto") else max(1, int(batch_size))
        self.devices = [device_of(detector) for detector in self.detectors]
        self.gpu_memory_mib = gpu_memory_mib() if any(d.startswith("GPU") for d in self.devices) else None
        self.max_frames = max(1, int(options.get("max_frames", 3600)))
        self.queue_frames = max(1, int(options.get("queue_frames", 32)))
        # Decoded frames held at once by this worker, across every file in flight (the memory bound).
        self.frames_in_memory = max(self.batch_size or 1, int(options.get("max_frames_in_memory", 64)))
        self.frame_budget = threading.BoundedSemaphore(self.frames_in_memory)
        self.sheet_frames = max(1, int(options.get("contact_sheet_frames", 12)))
        self.thumbnail_width = max(64, int(options.get("thumbnail_width", 320)))
        self.max_pixels = int(options.get("max_pixels", DEFAULT_MAX_PIXELS))
        max_side = options.get("max_side", 960)
        self.max_side = int(max_side) if max_side else None
        # One batcher per detector: frames of every file in flight in this worker (several jobs) share its calls,
        # up to the batch size for their shape.
        batch_wait = float(options.get("batch_wait_ms", 10)) / 1000
        self.batchers = [
            Batcher(detector.detect, self.batch_limit, batch_wait, key=lambda image: image.shape, name=f"batch-{detector.name}")
            for detector in self.detectors
        ]
        self.labels = sorted({label for detector in self.detectors for label in detector.labels})
        self.colours = label_colours(self.labels)
        for detector in self.detectors:
            log.info("detector ready", extra={"detector": detector.name, "version": detector.version, "device": device_of(detector)})

    def batch_for(self, info: MediaInfo) -> int:
        """The configured batch size, or one chosen by device and the frames' size at inference."""
        width, height = info.width, info.height
        if self.max_side and max(width, height) > self.max_side:
            scale = self.max_side / max(width, height)
            width, height = round(width * scale), round(height * scale)
        return self.batch_limit((height, width))

    def batch_limit(self, shape: Any) -> int:
        """Frames of this (inference) shape per model call: the configured size, or chosen by device and memory."""
        if self.batch_size is not None:
            return self.batch_size
        height, width = shape[:2]
        return choose_batch_size(self.devices, width * height, self.gpu_memory_mib)

    reads_ranges = True  # a segment decodes its range from ``context.source``; see worker.ranged

    def process(self, path: Path, context: StepContext) -> StepOutput:
        started = time.perf_counter()
        source: Source = context.source or path
        info = probe(source, self.max_pixels)
        segment = context.segment if info.kind == "video" else None
        frames = (segment.start_frame, segment.end_frame) if segment is not None else None
        reader = FrameReader(source, info, self.sampling, self.max_frames, self.queue_frames, self.frame_budget, frames=frames)
        run = _Run(self, info)
        batch_size = self.batch_for(info)
        for batch in reader.batches(batch_size):
            try:
                run.infer(batch)
            finally:
                reader.release(len(batch))
        if segment is not None:  # the merge draws the whole video's pictures from every segment's tiles
            files, tiles = segment_tiles(run.sheet, run.frames, context.workdir)
        else:
            files = {CONTACT_SHEET: contact_sheet(run.sheet.chosen(), context.workdir / CONTACT_SHEET)}  # type: ignore[arg-type]
            if info.kind == "video":  # a photo's timeline is one point: its contact sheet (the photo, boxed) says it all
                files[TIMELINE] = timeline(run.times, run.counts, context.workdir / TIMELINE)
        document = {
            "media": {
                "kind": info.kind,
                "format": info.format,
                "width": info.width,
                "height": info.height,
                "fps": info.fps,
                "frame_count": info.frame_count,
                "duration": info.duration,
                "frames_read": reader.frames_read,
            },
            "sampling": {
                "per_second": self.sampling.per_second,
                "every_n_frames": self.sampling.every_n_frames,
                "step": reader.step,
                "sampled_frames": len(run.frames),
                "batch_size": batch_size,
                "max_side": self.max_side,
            },
            "models": [model_record(d) for d in self.detectors],
            "frames": run.frames,
            "summary": run.summary(),
            "timings": {
                "decode": round(reader.decode_seconds, 4),
                "inference": round(run.inference_seconds, 4),
                "wall": round(time.perf_counter() - started, 4),
            },
            "pictures": {"contact_sheet": CONTACT_SHEET, **({"timeline": TIMELINE} if TIMELINE in files else {})},
        }
        if segment is not None:
            document["pictures"], document["tiles"] = {"tiles": TILES}, tiles
        return StepOutput(document=document, files=files)

    # --- long videos in segments (worker/splitter.py) ----------------------------------------------

    def timeline(self, path: Source) -> VideoTimeline | None:
        """How a video's frames are sampled, for planning its segments; None for images (a ranged input: from its first bytes)."""
        if media_kind(path, self.max_pixels)[0] != "video":
            return None
        info = probe(path, self.max_pixels)
        if info.kind != "video" or not info.fps or info.frame_count <= 0:
            return None
        step = self.sampling.step(info.fps)
        limit = (self.max_frames - 1) * step + 1  # one pass stops after its max_frames-th sampled frame
        return VideoTimeline(info.fps, info.frame_count, step, limit if limit < info.frame_count else None)

    def merge(self, parts: list[SegmentPart], context: StepContext) -> StepOutput:
        return merge_segments(parts, self.labels, self.sheet_frames, context.workdir, CONTACT_SHEET, TIMELINE)


class _Run:
    """What one file's frames accumulate: per-frame results, counts over time, contact-sheet tiles."""

    def __init__(self, processor: DetectionProcessor, info: MediaInfo):
        self.processor, self.info = processor, info
        self.frames: list[dict[str, Any]] = []
        self.times: list[float] = []
        self.counts: dict[str, list[int]] = {label: [] for label in processor.labels}
        self.first_seen: dict[str, float] = {}
        self.last_seen: dict[str, float] = {}
        self.sheet = EvenSample(processor.sheet_frames)
        self.inference_seconds = 0.0

    def infer(self, batch: Sequence[Frame]) -> None:
        bgr = [self.for_inference(frame.image) for frame in batch]
        rgb: list[Any] | None = None
        found: list[list[Detection]] = [[] for _ in batch]
        for detector, batcher in zip(self.processor.detectors, self.processor.batchers, strict=True):
            if detector.colour == "rgb" and rgb is None:
                rgb = [cv2.cvtColor(image, cv2.COLOR_BGR2RGB) for image in bgr]
            started = time.perf_counter()
            results = batcher.submit(rgb if detector.colour == "rgb" else bgr)  # type: ignore[arg-type]
            self.inference_seconds += time.perf_counter() - started
            for index, detections in enumerate(results):
                found[index].extend(detections)
        for frame, detections in zip(batch, found, strict=True):
            self.record(frame, detections)

    def for_inference(self, image: Any) -> Any:
        """The frame scaled down to max_side (boxes are normalised, so they need no change)."""
        limit = self.processor.max_side
        height, width = image.shape[:2]
        if not limit or max(height, width) <= limit:
            return image
        scale = limit / max(height, width)
        return cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)

    def record(self, frame: Frame, detections: list[Detection]) -> None:
        self.frames.append({"index": frame.index, "timestamp": frame.timestamp, "detections": [d.to_json() for d in detections]})
        self.times.append(frame.timestamp)
        for label in self.counts:
            count = sum(1 for d in detections if d.label == label)
            self.counts[label].append(count)
            if count:
                self.first_seen.setdefault(label, frame.timestamp)
                self.last_seen[label] = frame.timestamp
        caption = f"#{frame.index}  {frame.timestamp:.2f}s" if self.info.kind == "video" else self.info.format
        width = self.processor.thumbnail_width
        self.sheet.offer(lambda: thumbnail(frame.image, detections, self.processor.colours, width, caption))

    def summary(self) -> dict[str, Any]:
        total = max(1, len(self.frames))
        return {
            label: {
                "max_count": max(counts, default=0),
                "mean_count": round(sum(counts) / total, 4),
                "frames_with": sum(1 for c in counts if c),
                "first_seen": self.first_seen.get(label),
                "last_seen": self.last_seen.get(label),
            }
            for label, counts in self.counts.items()
        }
