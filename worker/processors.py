"""The processor interface, the registry that picks one by name, and a trivial one.

A processor turns a local input file into a JSON document plus optional files
(pictures) that are uploaded beside it. ``PROCESSOR`` names a registered
processor or a ``package.module:attribute`` import path to a plugin class.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from worker.errors import PermanentError
from worker.plugins import resolve


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


@dataclass
class StepOutput:
    """The result document and the files to upload beside it (name -> local path)."""

    document: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)


class Processor(Protocol):
    name: str
    version: str

    def process(self, path: Path, context: StepContext) -> StepOutput: ...


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


def require_media(path: Path) -> tuple[str, str]:
    """(kind, format) of ``path``, or a PermanentError that says what is wrong with it."""
    size = path.stat().st_size
    if size == 0:
        raise PermanentError("empty file (0 bytes)")
    with path.open("rb") as handle:
        head = handle.read(16)
    media = sniff_media(head)
    if media is None:
        raise PermanentError(f"not a supported image or video (first bytes {head[:8].hex()})")
    return media


class MediaInfoProcessor:
    """Checks that the input is media and reports its type, size and digest."""

    name = "media-info"
    version = "1"

    def __init__(self, options: Mapping[str, Any]):
        self.options = dict(options)

    def process(self, path: Path, context: StepContext) -> StepOutput:
        kind, fmt = require_media(path)
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


def load_processor(spec: str, options: Mapping[str, Any]) -> Processor:
    """A registered processor by name, or a plugin by ``module:attribute``."""
    factory: ProcessorFactory = resolve(spec, REGISTRY, "processor")
    return factory(options)
