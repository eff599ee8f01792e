"""An input read in ranges: seekable, read-only file objects over ranged reads of one object version.

A split step's segments decode only their frame range; handed a file object instead of a downloaded
file, the decoder (OpenCV's FFmpeg, which reads Python file objects) reads the container's header and
index and the bytes of that range, and nothing else. ``RangedInput`` is the input: its size, its head,
and a cache of the windows read so far, shared by every file object ``open()`` makes of it (the probe's,
the frame reader's and the annotation's), so no byte is fetched twice: the windows last used stay in memory
(``cache_bytes``), and, given a ``spill`` file (a step's input gets one in its work directory), the windows
dropped from memory are written there at their offsets, so that a second pass over a range (the annotated
video decodes every frame of the segment again) reads the task's disk, not S3. ``RangedFile`` is one file
object: its own position, and a read-ahead that grows while reads are sequential (``min_block`` after
every seek, doubling up to ``max_block``), so a segment's frames cost a few large reads and a seek to
an index at the end of the file costs one small one.

A fetch that fails inside the decoder cannot raise through it (OpenCV reads the file object from C++
and sees an error as the end of the file): the error is kept (``RangedInput.failure``) and whoever reads
through a decoder raises it afterwards (``raise_failure``), so a version overwritten mid-read fails as
the whole-file download does, and a network error is retried, never reported as a truncated video.

``worker.s3input.S3Input`` is one over S3.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import logging
import os
import shutil
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from worker.errors import TransientError

log = logging.getLogger("worker")

FIRST_BLOCK = 256 * 1024  # the first GET: a container's header, or the whole of most images
MIN_BLOCK = 256 * 1024  # read after a seek (an index, a keyframe)
MAX_BLOCK = 8 * 1024 * 1024  # read-ahead while reading on
CACHE_BYTES = 24 * 1024 * 1024  # windows kept per input (least recently used dropped first)

Fetch = Callable[[int, int], bytes]  # (start, end) -> the bytes [start, end) of the object


class RangedInput:
    """An object of ``size`` bytes read in windows through ``fetch``; counts its reads (``calls``, ``bytes_read``)."""

    def __init__(
        self,
        fetch: Fetch,
        size: int,
        name: str = "",
        min_block: int = MIN_BLOCK,
        max_block: int = MAX_BLOCK,
        cache_bytes: int = CACHE_BYTES,
        spill: Path | None = None,
    ):
        self._fetch, self.size, self.name = fetch, size, name
        self.min_block, self.max_block, self.cache_bytes = min_block, max(min_block, max_block), cache_bytes
        self.calls = 0
        self.bytes_read = 0
        self.failure: BaseException | None = None
        self._windows: OrderedDict[int, bytes] = OrderedDict()  # start -> bytes, least recently used first
        self._cached = 0
        self._lock = threading.Lock()
        self._opened: list[RangedFile] = []
        self._closed = False
        self._spill_path = spill  # the windows dropped from memory, written at their offsets (a sparse file)
        self._spill: int | None = None  # its descriptor, once a window is written
        self._spilling = spill is not None  # False once a write failed (a full disk): what is spilled stays readable
        self._spilled: list[tuple[int, int]] = []  # the [start, end) ranges it holds: sorted, disjoint, not touching

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix.lower()

    def open(self, for_decoder: bool = False) -> RangedFile:
        """A new file object over the input (its own position; the cache is shared).

        ``for_decoder``: a failed read ends the file (its error kept in ``failure``) instead of raising: OpenCV
        crashes on an exception from a file object's ``read`` (a segmentation fault, not an error).

        The input keeps a reference to every file object it opened: OpenCV releases its reference to the file
        object it reads with the GIL released, and were that the last one, freeing it there would crash the
        interpreter ("PyThreadState_Get: the function must be called with the GIL held"). So whoever decodes through
        a file object holds the input until the decoder is released (they refer to it only weakly).
        """
        handle = RangedFile(self, for_decoder)
        self._opened.append(handle)
        return handle

    def head(self, length: int = 16) -> bytes:
        """The first ``length`` bytes (from the cache when read already)."""
        with self.open() as handle:
            return handle.read(length)

    def raise_failure(self) -> None:
        """Raise the error a fetch met inside a decoder, if one did."""
        if self.failure is not None:
            raise self.failure

    def close(self) -> None:
        """Drop the cache and keep nothing more: the step that read the input has ended. (A failed read's error,
        kept in ``failure``, holds in its traceback the frames that read the input: a cycle, which only a full
        garbage collection frees, so the windows go here rather than with the input.)"""
        with self._lock:
            self._closed = True
            self._windows.clear()
            self._cached = 0
            self._spilled.clear()
            if self._spill is not None:
                os.close(self._spill)
                self._spill = None
                if self._spill_path is not None:
                    with contextlib.suppress(OSError):
                        self._spill_path.unlink(missing_ok=True)

    def add(self, start: int, data: bytes) -> None:
        """Keep ``data`` (the bytes from ``start``) in the cache (not once closed)."""
        if not data:
            return
        with self._lock:
            if self._closed:
                return
            old = self._windows.pop(start, None)
            self._cached -= len(old) if old is not None else 0
            self._windows[start] = data
            self._cached += len(data)
            while self._cached > self.cache_bytes and len(self._windows) > 1:
                dropped_at, dropped = self._windows.popitem(last=False)
                self._cached -= len(dropped)
                self._write_spill(dropped_at, dropped)

    def _write_spill(self, start: int, data: bytes) -> None:
        """Keep a window dropped from memory in the spill file, if there is one (under the lock)."""
        if self._spill_path is None or not self._spilling:
            return
        try:
            if self._spill is None:
                self._spill = os.open(self._spill_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            written = os.pwrite(self._spill, data, start)
        except OSError as error:  # a full or read-only disk: keep what is spilled, drop windows from here on as without one
            log.warning("input spill stopped: windows dropped from memory are read again", extra={"error": str(error)})
            self._spilling = False
            return
        if not written:
            return
        end = start + written
        index = bisect.bisect_left(self._spilled, (start, start))
        if index and self._spilled[index - 1][1] >= start:
            index -= 1
        merged_to = index
        while merged_to < len(self._spilled) and self._spilled[merged_to][0] <= end:
            start, end = min(start, self._spilled[merged_to][0]), max(end, self._spilled[merged_to][1])
            merged_to += 1
        self._spilled[index:merged_to] = [(start, end)]

    def _read_spill(self, position: int, length: int) -> bytes | None:
        """Up to ``length`` bytes (at most ``max_block``) from ``position`` out of the spill file, if it holds ``position``
        (under the lock). Only what the reader asked for: a decoder reads a few KiB at a time, and what is read from
        here is not kept in memory, so a block read ahead would be read again from disk for each of its pieces."""
        if self._spill is None:
            return None
        index = bisect.bisect_right(self._spilled, (position, float("inf"))) - 1
        if index < 0 or not self._spilled[index][0] <= position < self._spilled[index][1]:
            return None
        return os.pread(self._spill, min(self._spilled[index][1] - position, self.max_block, max(1, length)), position)

    def cached(self, position: int, length: int = MAX_BLOCK) -> tuple[bytes, int] | None:
        """(window, offset of ``position`` in it) for a cached window holding ``position``: in memory, or spilled (then
        up to ``length`` bytes from ``position``)."""
        with self._lock:
            for start, data in self._windows.items():
                if start <= position < start + len(data):
                    self._windows.move_to_end(start)
                    return data, position - start
            spilled = self._read_spill(position, length)
        return (spilled, 0) if spilled else None

    def fetch(self, start: int, end: int) -> bytes:
        """Read [start, end) from the object (clipped to its size), count it, cache it."""
        end = min(end, self.size)
        if start >= end:
            return b""
        try:
            data = self._fetch(start, end)
        except BaseException as error:
            self.failure = self.failure or error
            raise
        if len(data) != end - start:
            short = TransientError(f"ranged read of {self.name or 'the input'} [{start}, {end}) returned {len(data)} bytes")
            self.failure = self.failure or short
            raise short
        self.calls += 1
        self.bytes_read += len(data)
        self.add(start, data)
        return data

    def contiguous_prefix(self) -> int:
        """How many bytes from the start of the object the cache (memory and spill) holds without a gap."""
        with self._lock:
            end = 0
            held = sorted([(start, start + len(data)) for start, data in self._windows.items()] + self._spilled)
            for start, stop in held:
                if start > end:
                    break
                end = max(end, stop)
            return end

    def copy_to(self, path: Path, rest: Callable[[int], Any] | None = None) -> None:
        """Write the whole object to ``path``: the cached prefix, then the rest in one read
        (``rest(start)``: a readable stream of the bytes from ``start``; default: windows of ``max_block``)."""
        prefix = self.contiguous_prefix()
        with path.open("wb") as out:
            with self.open() as handle:
                out.write(handle.read(prefix))
            if prefix >= self.size:
                return
            if rest is None:
                with self.open() as handle:
                    handle.seek(prefix)
                    shutil.copyfileobj(handle, out, length=self.max_block)
                return
            body = rest(prefix)
            with contextlib.closing(body):
                copied = 0
                while chunk := body.read(1 << 20):
                    out.write(chunk)
                    copied += len(chunk)
            self.calls += 1
            self.bytes_read += copied
            if prefix + copied != self.size:
                raise TransientError(f"read {prefix + copied} of the {self.size} bytes of {self.name or 'the input'}")


class RangedFile(io.BufferedIOBase):
    """A seekable, read-only file object over a ``RangedInput``: reads come from its cache or from ranged fetches."""

    def __init__(self, source: RangedInput, for_decoder: bool = False):
        super().__init__()
        # Weak: the input keeps its file objects alive (see ``RangedInput.open``); a strong reference back would make
        # a cycle that holds the input's cached windows until a full garbage collection, long after its step.
        self._source, self.for_decoder = weakref.ref(source), for_decoder
        self._position = 0
        self._block = source.min_block
        self._last_end: int | None = None  # where this file's last fetch ended (read-ahead grows while reads go on from there)

    @property
    def source(self) -> RangedInput:
        source = self._source()
        if source is None:
            raise ValueError("read of a file object whose input is gone")
        return source

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._position + offset
        elif whence == io.SEEK_END:
            position = self.source.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        self._position = position
        return position

    def read(self, size: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("read of a closed file")
        if not self.for_decoder:
            return self._read(size)
        source = self._source()  # held by whoever reads through the decoder (an exception here would crash OpenCV)
        if source is None or source.failure is not None:
            return b""
        try:
            return self._read(size)
        except Exception as error:  # noqa: BLE001 - kept in source.failure for the decoder's caller to raise
            source.failure = source.failure or error
            return b""

    def _read(self, size: int | None) -> bytes:
        end = self.source.size if size is None or size < 0 else min(self.source.size, self._position + size)
        parts: list[bytes] = []
        while self._position < end:
            found = self.source.cached(self._position, end - self._position)
            if found is None:
                data, offset = self._fetch(end), 0
            else:
                data, offset = found
            piece = data[offset : offset + end - self._position]
            parts.append(piece)
            self._position += len(piece)
        return b"".join(parts)

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def _fetch(self, end: int) -> bytes:
        """Fetch a window at the position: ``min_block`` after a seek, twice the last while reading on, at least to ``end``."""
        position = self._position
        sequential = self._last_end is not None and self._last_end <= position <= self._last_end + self._block
        self._block = min(self._block * 2, self.source.max_block) if sequential else self.source.min_block
        length = max(self._block, end - position)
        data = self.source.fetch(position, position + length)
        self._last_end = position + len(data)
        return data


Source = Path | RangedInput  # what a processor reads: a downloaded file, or an input read in ranges
