"""Annotated media beside a result: the input with each sampled frame's boxes, labels and scores drawn on it.

A step with ``annotate`` on (``ANNOTATE=true``; Terraform's step attribute ``annotate``) wraps its processor
(``wrap``): after the processor has written its document, a video becomes ``annotated.mp4`` (H.264, yuv420p,
``faststart``: what every browser plays while it downloads), an image ``annotated.jpg``. Every frame of the
video is written, each with the boxes of the latest sampled frame at or before it (held until the next sampled
frame), and a small overlay with the time and the count per label.

- **Where it runs.** Drawing and encoding run on a small pool of annotation threads (``ENCODE_THREADS``), after
  the file's detections, holding none of the detectors' frame budget: the GPU's batches keep serving the other
  files in flight while one file encodes, and at most ``ENCODE_THREADS`` files encode at once, so encoding
  cannot starve the decoders that feed the GPU. The encoder is FFmpeg's libx264 through PyAV (``av``), whose
  wheels carry FFmpeg: nothing depends on an ``ffmpeg`` binary in the image.
- **Segments of a long video.** Each segment encodes its own frame range (frames are read by index exactly as
  the detector's reader reads them). The merge joins the segments' files packet by packet, with no
  re-encoding (``concat``): every segment is encoded with the same settings, starts on a key frame and has no
  B-frames, so the joined stream is the one a single pass would have made, at the cost of a copy.
- **Never at the detections' expense.** Annotation that fails (an encoder error, an unreadable frame) is
  recorded in the document (``annotation.error``) and the step still succeeds with its detections.

The processor's document must hold what the ``detect`` processor writes: ``media`` (kind, fps), ``sampling.step``
and ``frames`` (index, timestamp, detections with normalised boxes). A document without ``frames`` (``media-info``)
passes through untouched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Generator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from worker.detection.media import Source, open_capture, raise_read_failure
from worker.processing import Processor, SegmentPart, StepContext, StepOutput, can_split

log = logging.getLogger("worker")

ANNOTATED_VIDEO = "annotated.mp4"
ANNOTATED_IMAGE = "annotated.jpg"
VIDEO_MAX_SIDE = 960  # larger videos are scaled down for the annotated copy: it is for looking at, not for measuring
IMAGE_MAX_SIDE = 2048
ENCODE_THREADS = 2  # files encoding at once per worker
ENCODER_THREADS = 2  # libx264's own threads per file
# libx264, tuned for size and speed: no B-frames (every packet's pts is its dts, which makes concat exact).
X264_OPTIONS = {"preset": "superfast", "crf": "26", "bf": "0", "threads": str(ENCODER_THREADS)}
CONTAINER_OPTIONS = {"movflags": "+faststart"}  # the index first: a browser plays while it downloads

# BGR, as the contact sheet draws them (worker/detection/pictures.py): one colour per label across every picture.
PALETTE = [(40, 200, 40), (40, 40, 230), (230, 140, 30), (200, 40, 200), (30, 200, 220), (120, 120, 120)]

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def encoders() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=ENCODE_THREADS, thread_name_prefix="annotate")
        return _pool


# --- the processor wrapper --------------------------------------------------------------------------


def wrap(processor: Processor) -> Processor:
    """``processor`` with annotated media added to its output (and to its merge, when it splits videos).

    Imports PyAV here, so that a worker whose image lacks it refuses to start (ImportError) rather than
    failing every file's annotation.
    """
    import av  # noqa: F401

    return AnnotatingSplitter(processor) if can_split(processor) else Annotating(processor)


class Annotating:
    """Runs the wrapped processor, then annotates its input from the document it wrote."""

    def __init__(self, inner: Processor):
        self.inner = inner
        self.name, self.version = inner.name, inner.version

    def __getattr__(self, attribute: str) -> Any:  # everything else is the wrapped processor's
        return getattr(self.inner, attribute)

    def process(self, path: Path, context: StepContext) -> StepOutput:
        output = self.inner.process(path, context)
        return encoders().submit(annotate_output, path, context, output).result()


class AnnotatingSplitter(Annotating):
    """The same, for a processor that splits long videos: the merge joins the segments' annotated videos."""

    def timeline(self, path: Path) -> Any:
        return self.inner.timeline(path)  # type: ignore[attr-defined]

    def merge(self, parts: list[SegmentPart], context: StepContext) -> StepOutput:
        output: StepOutput = self.inner.merge(parts, context)  # type: ignore[attr-defined]
        return merge_annotated(parts, output, context.workdir)


# --- what gets annotated ----------------------------------------------------------------------------


def annotate_output(path: Path, context: StepContext, output: StepOutput) -> StepOutput:
    """``output`` with the annotated image or video added (or ``annotation.error`` saying why not)."""
    document = output.document
    frames, media = document.get("frames"), document.get("media")
    if not isinstance(frames, list) or not isinstance(media, Mapping) or media.get("kind") not in ("image", "video"):
        return output
    started = time.perf_counter()
    colours = label_colours(labels_of(document))
    try:
        if media["kind"] == "image":
            name, stats = (
                ANNOTATED_IMAGE,
                annotate_image(path, frames[0]["detections"] if frames else [], colours, context.workdir / ANNOTATED_IMAGE),
            )
        else:
            segment = context.segment
            start, end = (segment.start_frame, segment.end_frame) if segment is not None else (0, None)
            step = int(document.get("sampling", {}).get("step") or 1)
            name = ANNOTATED_VIDEO
            source: Source = context.source or path  # a segment reads its range as the processor did
            stats = annotate_video(source, frames, float(media["fps"]), colours, context.workdir / name, start=start, end=end, step=step)
    except Exception as error:  # the detections stand without their pictures (but not without their input)
        if context.source is not None and error is context.source.failure:
            raise  # the input's read failed (the decoder saw it as the end): the segment fails or retries, as its frames' would
        log.warning("annotation failed", extra={"job_id": context.job_id, "reason": f"{type(error).__name__}: {error}"})
        document["annotation"] = {"error": f"{type(error).__name__}: {error}"}
        return output
    seconds = round(time.perf_counter() - started, 4)
    document["annotation"] = {"file": name, **stats, "seconds": seconds}
    document.setdefault("pictures", {})["annotated"] = name
    document.setdefault("timings", {})["annotate"] = seconds
    return StepOutput(document=document, files={**output.files, name: context.workdir / name})


def merge_annotated(parts: Sequence[SegmentPart], output: StepOutput, workdir: Path) -> StepOutput:
    """The merged ``output`` with the segments' annotated videos joined into one, without re-encoding."""
    parts = sorted(parts, key=lambda part: part.segment.index)
    videos = [part.files.get(ANNOTATED_VIDEO) for part in parts]
    missing = [part for part, video in zip(parts, videos, strict=True) if video is None]
    if not parts or missing:
        reasons = "; ".join(
            f"{part.segment.label}: {part.result.get('output', {}).get('annotation', {}).get('error') or 'annotate was off when it ran'}"
            for part in missing
        )
        output.document["annotation"] = {"error": f"no {ANNOTATED_VIDEO} from {reasons or 'any segment'}"}
        return output
    started = time.perf_counter()
    target = workdir / ANNOTATED_VIDEO
    try:
        frames = concat_videos([video for video in videos if video is not None], target)
    except Exception as error:  # noqa: BLE001 - the detections stand without their pictures
        output.document["annotation"] = {"error": f"joining the segments' videos: {type(error).__name__}: {error}"}
        return output
    seconds = round(time.perf_counter() - started, 4)
    encoded = [part.result.get("output", {}).get("annotation", {}) for part in parts]
    output.document["annotation"] = {
        "file": ANNOTATED_VIDEO,
        "frames": frames,
        "bytes": target.stat().st_size,
        "codec": "h264",
        "width": encoded[0].get("width"),
        "height": encoded[0].get("height"),
        "encode_seconds": round(sum(float(a.get("encode_seconds", 0.0)) for a in encoded), 4),  # summed over the segments
        "concat_seconds": seconds,
        "seconds": seconds,
    }
    output.document.setdefault("pictures", {})["annotated"] = ANNOTATED_VIDEO
    output.document.setdefault("timings", {})["annotate"] = seconds
    return StepOutput(document=output.document, files={**output.files, ANNOTATED_VIDEO: target})


def labels_of(document: Mapping[str, Any]) -> list[str]:
    """Every label the models can give, else every label found: the colour of a label is the same in every picture."""
    labels = {label for model in document.get("models", []) for label in model.get("labels", [])}
    labels |= {d["label"] for frame in document.get("frames", []) for d in frame.get("detections", [])}
    return sorted(labels)


def label_colours(labels: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    return {label: PALETTE[index % len(PALETTE)] for index, label in enumerate(sorted(labels))}


# --- drawing ----------------------------------------------------------------------------------------


def draw(
    image: NDArray[Any], detections: Sequence[Mapping[str, Any]], colours: Mapping[str, tuple[int, int, int]], caption: str | None
) -> NDArray[Any]:
    """Boxes with label and score on ``image`` (in place), and an overlay: ``caption`` and the count per label."""
    height, width = image.shape[:2]
    font = min(1.2, max(0.35, min(width, height) / 960))  # 0.5 at 480 lines
    text_thickness = 1 if font < 0.8 else 2
    thickness = max(1, round(min(width, height) / 240))
    for detection in detections:
        x0, y0, x1, y1 = detection["box"]
        colour = colours.get(detection["label"], PALETTE[-1])
        p0, p1 = (round(x0 * width), round(y0 * height)), (round(x1 * width), round(y1 * height))
        cv2.rectangle(image, p0, p1, colour, thickness)
        text = f"{detection['label']} {float(detection.get('score', 0.0)):.2f}"
        (text_w, text_h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, text_thickness)
        top = p0[1] - text_h - 6 if p0[1] - text_h - 6 >= 0 else p0[1]
        cv2.rectangle(image, (p0[0], top), (p0[0] + text_w + 6, top + text_h + 6), colour, -1)
        cv2.putText(
            image, text, (p0[0] + 3, top + text_h + 2), cv2.FONT_HERSHEY_SIMPLEX, font, (255, 255, 255), text_thickness, cv2.LINE_AA
        )
    counts: dict[str, int] = {}
    for detection in detections:
        counts[detection["label"]] = counts.get(detection["label"], 0) + 1
    found = "  ".join(f"{label} {n}" for label, n in sorted(counts.items())) or "none found"
    overlay = f"{caption}  {found}" if caption else found
    (text_w, text_h), _ = cv2.getTextSize(overlay, cv2.FONT_HERSHEY_SIMPLEX, font, text_thickness)
    cv2.rectangle(image, (0, 0), (text_w + 10, text_h + 10), (0, 0, 0), -1)
    cv2.putText(image, overlay, (5, text_h + 5), cv2.FONT_HERSHEY_SIMPLEX, font, (255, 255, 255), text_thickness, cv2.LINE_AA)
    return image


def fitted(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size of the annotated copy: at most ``max_side`` on its longer side, both sides even (yuv420p needs it)."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, round(width * scale) // 2 * 2), max(2, round(height * scale) // 2 * 2)


def annotate_image(
    path: Path, detections: Sequence[Mapping[str, Any]], colours: Mapping[str, tuple[int, int, int]], target: Path
) -> dict[str, Any]:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("the image could not be read again for annotation")
    height, width = image.shape[:2]
    if max(width, height) > IMAGE_MAX_SIDE:
        image = cv2.resize(image, fitted(width, height, IMAGE_MAX_SIDE), interpolation=cv2.INTER_AREA)
    started = time.perf_counter()
    draw(image, detections, colours, None)
    cv2.imwrite(str(target), image, [cv2.IMWRITE_JPEG_QUALITY, 88])
    return {
        "frames": 1,
        "bytes": target.stat().st_size,
        "width": image.shape[1],
        "height": image.shape[0],
        "encode_seconds": round(time.perf_counter() - started, 4),
    }


# --- video --------------------------------------------------------------------------------------------


def held_detections(frames: Sequence[Mapping[str, Any]]) -> Generator[list[Any], int, None]:
    """A cursor: send it a frame index, get the detections of the latest sampled frame at or before it."""
    ordered = sorted(frames, key=lambda frame: int(frame["index"]))
    position = 0
    current: list[Any] = []
    index = yield current
    while True:
        while position < len(ordered) and int(ordered[position]["index"]) <= index:
            current = ordered[position]["detections"]
            position += 1
        index = yield current


def annotate_video(
    path: Source,
    frames: Sequence[Mapping[str, Any]],
    fps: float,
    colours: Mapping[str, tuple[int, int, int]],
    target: Path,
    *,
    start: int = 0,
    end: int | None = None,
    step: int = 1,
) -> dict[str, Any]:
    """Frames [start, end) of ``path`` with their held boxes, as an H.264 MP4 at ``target``; what was written.

    The video ends one sampling step after its last sampled frame (a pass stopped by ``max_frames`` sampled no
    further), or at ``end``, or where the file ends, whichever comes first.
    """
    import av  # the worker pays for FFmpeg only on steps that annotate

    if frames:
        last = max(int(frame["index"]) for frame in frames) + step
        end = last if end is None else min(end, last)
    capture = open_capture(path)
    decode = encode = 0.0
    written = 0
    try:
        index = seek(capture, start)
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        size = fitted(width, height, VIDEO_MAX_SIDE)
        cursor = held_detections(frames)
        next(cursor)
        rate = Fraction(fps).limit_denominator(1001)
        with av.open(str(target), "w", format="mp4", options=CONTAINER_OPTIONS) as container:
            stream = container.add_stream("libx264", rate=rate, options=X264_OPTIONS)
            stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
            stream.codec_context.time_base = 1 / rate
            while end is None or index < end:
                began = time.perf_counter()
                ok, image = capture.read()
                decode += time.perf_counter() - began
                if not ok:
                    break
                if (image.shape[1], image.shape[0]) != size:
                    image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
                draw(image, cursor.send(index), colours, f"{index / fps:7.2f}s")
                began = time.perf_counter()
                frame = av.VideoFrame.from_ndarray(np.asarray(image, np.uint8), format="bgr24")
                frame.pts = written
                for packet in stream.encode(frame):
                    container.mux(packet)
                encode += time.perf_counter() - began
                written += 1
                index += 1
            began = time.perf_counter()
            for packet in stream.encode():
                container.mux(packet)
            encode += time.perf_counter() - began
    finally:
        capture.release()
    raise_read_failure(path)  # a ranged read that failed ended the decoder's file early: its error, not a shorter video
    if not written:
        target.unlink(missing_ok=True)
        raise ValueError(f"no frames could be read from frame {start} on")
    return {
        "frames": written,
        "bytes": target.stat().st_size,
        "codec": "h264",
        "width": size[0],
        "height": size[1],
        "decode_seconds": round(decode, 4),
        "encode_seconds": round(encode, 4),
    }


def seek(capture: cv2.VideoCapture, start: int) -> int:
    """Position ``capture`` at frame ``start`` as the detector's reader does (worker/detection/media.py); the next index."""
    if not start:
        return 0
    if capture.set(cv2.CAP_PROP_POS_FRAMES, start) and int(capture.get(cv2.CAP_PROP_POS_FRAMES)) == start:
        return start
    capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
    index = 0
    while index < start and capture.grab():
        index += 1
    return index


def concat_videos(paths: Sequence[Path], target: Path) -> int:
    """The videos one after the other in one MP4, their packets copied (no decoding, no encoding); the frame count.

    Each input's timestamps are shifted by the duration of those before it. The inputs must share codec and
    size, as segments encoded by ``annotate_video`` with one configuration do.
    """
    import av

    offset = Fraction(0)  # seconds written so far
    packets = 0
    with av.open(str(target), "w", format="mp4", options=CONTAINER_OPTIONS) as output:
        out_stream = None
        for path in paths:
            with av.open(str(path)) as source:
                stream = source.streams.video[0]
                if out_stream is None:
                    out_stream = output.add_stream_from_template(stream)
                elif (stream.codec_context.width, stream.codec_context.height) != (
                    out_stream.codec_context.width,
                    out_stream.codec_context.height,
                ):
                    raise ValueError(f"{path.name} is {stream.codec_context.width}x{stream.codec_context.height}, the first segment is not")
                time_base = stream.time_base or Fraction(1, 90000)
                shift = round(offset / time_base)
                end = shift
                for packet in source.demux(stream):
                    if packet.dts is None:  # the demuxer's end-of-stream marker
                        continue
                    packet.pts = (packet.pts or 0) + shift
                    packet.dts = packet.dts + shift
                    end = max(end, packet.pts + (packet.duration or 0))
                    packet.stream = out_stream
                    output.mux(packet)
                    packets += 1
                offset = Fraction(end) * time_base
    return packets
