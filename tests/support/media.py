"""Small real media files made in code: a valid PNG, and inputs that are not media."""

from __future__ import annotations

import struct
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A valid RGB PNG of one colour."""
    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(row * height)) + _chunk(b"IEND", b"")


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A valid black 1-bit PNG: a few tens of KB on disk, ``width * height`` pixels (400 MP by default) once decoded."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)
    data = b"".join(compressor.compress(row * 500) for _ in range(height // 500)) + compressor.compress(row * (height % 500))
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data + compressor.flush()) + _chunk(b"IEND", b"")


NOT_MEDIA = b"%PDF-1.4\n% not an image or a video\n"
EMPTY = b""
