"""What a file is, from its first bytes and its header: kind and format, an image's dimensions, the pixel limit."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from worker.errors import PermanentError

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
