"""The processor interface, the registry that picks one by name, and a trivial one.

A processor turns a local input file into a JSON document plus optional files
(pictures) that are uploaded beside it. ``PROCESSOR`` names a registered
processor or a ``package.module:attribute`` import path to a plugin class.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pipeline_core.segments import Segment, VideoTimeline
from worker.errors import PermanentError
from worker.plugins import resolve
from worker.ranged import RangedInput


@dataclass(frozen=True)
class StepContext:
    """What a processor knows about the work it is doing."""

    job_id: str
    step: str
    bucket: str
    key: str
    version: str
    attempt: int
    workdir: Path
    segment: Segment | None = None  # a split step's segment: process only its frame range (see ``SplittingProcessor``)
    # The input read in ranges (``worker.ranged``), for a processor with ``reads_ranges = True``: set for a segment,
    # whose ``path`` is then not downloaded (a segment reads its range and the container's index, not the file).
    source: RangedInput | None = None


@dataclass
class StepOutput:
    """The result document and the files to upload beside it (name -> local path)."""

    document: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)


class Processor(Protocol):
    name: str
    version: str

    def process(self, path: Path, context: StepContext) -> StepOutput: ...


@dataclass(frozen=True)
class SegmentPart:
    """One finished segment, as the merge sees it: its range, its committed result document and its files."""

    segment: Segment
    result: dict[str, Any]  # the segment's result.json (its ``output`` is the processor's document)
    files: dict[str, Path]  # the files it wrote, downloaded


class SplittingProcessor(Processor, Protocol):
    """A processor that can split long videos (``SEGMENT_SECONDS``): it plans, processes ranges and merges.

    ``timeline`` says how the file's frames are sampled (None: not a video, never split);
    ``process`` honours ``context.segment``; ``merge`` makes the whole file's output from every segment's.
    With ``reads_ranges = True`` it also reads ranges: ``timeline`` takes a ``RangedInput`` (and plans from the
    header), and ``process`` of a segment reads ``context.source``, its ``path`` not downloaded.
    """

    def timeline(self, path: Path) -> VideoTimeline | None: ...

    def merge(self, parts: list[SegmentPart], context: StepContext) -> StepOutput: ...


def can_split(processor: Processor) -> bool:
    return callable(getattr(processor, "timeline", None)) and callable(getattr(processor, "merge", None))


ProcessorFactory = Callable[[Mapping[str, Any]], Processor]

# Media signatures: (offset, magic bytes, kind, format).
_SIGNATURES: tuple[tuple[int, bytes, str, str], ...] = (
    (0, b"\xff\xd8\xff", "image", "jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "image", "png"),
    (0, b"GIF8", "image", "gif"),
    (8, b"WEBP", "image", "webp"),
    (8, b"AVI ", "video", "avi"),
    (4, b"ftyp", "video", "mp4"),
    (0, b"\x1a\x45\xdf\xa3", "video", "matroska"),
)


def sniff_media(head: bytes) -> tuple[str, str] | None:
    """(kind, format) from a file's first bytes, or None when it is not media we know."""
    for offset, magic, kind, fmt in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return kind, fmt
    return None


MEDIA_HEAD = 16  # the first bytes that name a file's kind and format


def identify_media(size: int, head: bytes) -> tuple[str, str]:
    """(kind, format) of a file of ``size`` bytes from its first ``MEDIA_HEAD`` bytes, or a PermanentError that says
    what is wrong with it."""
    if size == 0:
        raise PermanentError("empty file (0 bytes)")
    media = sniff_media(head)
    if media is None:
        raise PermanentError(f"not a supported image or video (first bytes {head[:8].hex()})")
    return media


DEFAULT_MAX_PIXELS = 100_000_000  # 100 megapixels: above any camera photo; refuses decompression bombs before decoding
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def image_dimensions(path: Path, fmt: str) -> tuple[int, int] | None:
    """(width, height) from an image's header, without decoding it; None when the header does not say."""
    with path.open("rb") as handle:
        head = handle.read(32)
        if fmt == "png" and len(head) >= 24:
            return struct.unpack(">II", head[16:24])
        if fmt == "gif" and len(head) >= 10:
            return struct.unpack("<HH", head[6:10])
        if fmt == "webp" and len(head) >= 30:
            chunk = head[12:16]
            if chunk == b"VP8 ":
                width, height = struct.unpack("<HH", head[26:30])
                return width & 0x3FFF, height & 0x3FFF
            if chunk == b"VP8L":
                bits = int.from_bytes(head[21:25], "little")
                return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            if chunk == b"VP8X":
                return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
        if fmt == "jpeg":
            return _jpeg_dimensions(handle)
    return None


def _jpeg_dimensions(handle: Any) -> tuple[int, int] | None:
    handle.seek(2)
    while True:
        marker = handle.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        if marker[1] in (0xD8, 0x01) or 0xD0 <= marker[1] <= 0xD7:  # segments without a length
            continue
        length_bytes = handle.read(2)
        if len(length_bytes) < 2:
            return None
        length = struct.unpack(">H", length_bytes)[0]
        if marker[1] in _JPEG_SOF:
            frame = handle.read(5)
            if len(frame) < 5:
                return None
            height, width = struct.unpack(">HH", frame[1:5])
            return width, height
        handle.seek(length - 2, 1)


def check_pixels(width: int, height: int, max_pixels: int, what: str) -> None:
    """PermanentError when a picture is larger than the configured pixel limit."""
    if width * height > max_pixels:
        raise PermanentError(
            f"{what} is {width}x{height} = {width * height / 1e6:.0f} megapixels, over the limit of "
            f"{max_pixels / 1e6:g} (processor option max_pixels)"
        )


def require_media(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str, str]:
    """(kind, format) of ``path``, or a PermanentError that says what is wrong with it.

    Images larger than ``max_pixels`` are refused from their header, before anything decodes them.
    """
    with path.open("rb") as handle:
        head = handle.read(MEDIA_HEAD)
    media = identify_media(path.stat().st_size, head)
    kind, fmt = media
    if kind == "image":
        dimensions = image_dimensions(path, fmt)
        if dimensions is not None:
            check_pixels(*dimensions, max_pixels, f"the {fmt} image")
    return media


class MediaInfoProcessor:
    """Checks that the input is media and reports its type, size and digest."""

    name = "media-info"
    version = "1"

    def __init__(self, options: Mapping[str, Any]):
        self.options = dict(options)

    def process(self, path: Path, context: StepContext) -> StepOutput:
        kind, fmt = require_media(path, int(self.options.get("max_pixels", DEFAULT_MAX_PIXELS)))
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        return StepOutput({"kind": kind, "format": fmt, "bytes": path.stat().st_size, "sha256": digest.hexdigest()})


# name -> "module:attribute", imported on use: OpenCV and TensorFlow load only in workers that detect.
REGISTRY: dict[str, str] = {
    MediaInfoProcessor.name: "worker.processors:MediaInfoProcessor",
    "detect": "worker.detection.engine:DetectionProcessor",
}


def load_processor(spec: str, options: Mapping[str, Any], annotate: bool = False) -> Processor:
    """A registered processor by name, or a plugin by ``module:attribute``; with ``annotate``, one that also writes
    the annotated image or video (worker/annotate.py)."""
    factory: ProcessorFactory = resolve(spec, REGISTRY, "processor")
    processor = factory(options)
    if annotate:
        from worker.annotate import wrap

        return wrap(processor)
    return processor
