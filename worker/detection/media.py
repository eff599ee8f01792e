"""Reading media: images as one-frame videos, videos sampled at a configured rate.

A video is read from a local file or from a ``RangedInput`` (``worker.ranged``: a file object over ranged
reads, which OpenCV's FFmpeg reads as it reads a file), so a segment reads only the bytes of its range.

Unsampled frames are skipped with ``grab()`` (no decode). Decoding runs in a
background thread that feeds a bounded queue, so inference never waits on the
decoder longer than it must and memory stays bounded.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from worker.errors import PermanentError
from worker.mediatype import DEFAULT_MAX_PIXELS, MEDIA_HEAD, check_pixels, identify_media, require_media
from worker.ranged import RangedInput, Source

TRUNCATION_TOLERANCE = 0.9  # fewer decodable frames than this share of the header's count: truncated


@dataclass(frozen=True)
class Sampling:
    """Every ``every_n_frames``-th frame, or ``per_second`` frames each second of video."""

    per_second: float | None = 1.0
    every_n_frames: int | None = None

    def step(self, fps: float) -> int:
        if self.every_n_frames:
            return max(1, int(self.every_n_frames))
        if not self.per_second or self.per_second <= 0:
            return 1
        return max(1, round(fps / self.per_second))


@dataclass(frozen=True)
class MediaInfo:
    kind: str  # image | video
    format: str
    width: int
    height: int
    fps: float | None
    frame_count: int  # from the container header for videos (may be approximate)
    duration: float | None


@dataclass(frozen=True)
class Frame:
    index: int
    timestamp: float
    image: np.ndarray  # BGR, as OpenCV decodes


def media_kind(source: Source, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str, str]:
    """(kind, format) of a file or a ranged input (from its first bytes); PermanentError when it is not media."""
    if isinstance(source, Path):
        return require_media(source, max_pixels)
    return identify_media(source.size, source.head(MEDIA_HEAD))


def open_capture(source: Source) -> cv2.VideoCapture:
    """An OpenCV capture of a video file, or of a ranged input through a file object of its own."""
    if isinstance(source, Path):
        return cv2.VideoCapture(str(source))
    stream: Any = source.open(for_decoder=True)  # OpenCV reads any io.BufferedIOBase (its IStreamReader)
    capture: cv2.VideoCapture = cv2.VideoCapture(stream, cv2.CAP_FFMPEG, [])
    return capture


def raise_read_failure(source: Source) -> None:
    """Raise the error a ranged read met inside the decoder (which saw it as the end of the file), if one did."""
    if isinstance(source, RangedInput):
        source.raise_failure()


def probe(path: Source, max_pixels: int = DEFAULT_MAX_PIXELS) -> MediaInfo:
    """What the file is; PermanentError for anything that is not readable media or larger than ``max_pixels`` a frame.

    A ranged input is probed from its header (and index) only; it must be a video (images are read from a file).
    """
    kind, fmt = media_kind(path, max_pixels)
    if kind == "image":
        if not isinstance(path, Path):
            raise ValueError("an image is read from a downloaded file, not in ranges")
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise PermanentError(f"corrupt or unreadable {fmt} image")
        height, width = image.shape[:2]
        return MediaInfo("image", fmt, width, height, None, 1, None)
    capture = open_capture(path)
    try:
        if not capture.isOpened():
            raise_read_failure(path)
            raise PermanentError(f"corrupt or unreadable {fmt} video: no decoder could open it")
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
    finally:
        capture.release()
    raise_read_failure(path)
    if fps <= 0 or width <= 0 or height <= 0:
        raise PermanentError(f"corrupt {fmt} video: no frame rate or size in its header")
    check_pixels(width, height, max_pixels, f"a frame of the {fmt} video")
    return MediaInfo("video", fmt, width, height, fps, frames, frames / fps if frames else None)


class FrameReader:
    """Sampled frames from a background decoding thread, through a bounded queue.

    ``decode_seconds`` is the decoder's own busy time; ``frames_read`` counts
    every frame passed over (grabbed or decoded).

    With a ``budget`` (a semaphore shared by every file the worker has in flight), the decoder takes
    one permit per decoded frame before decoding it; the consumer gives it back with ``release()``
    once the frame is inferred. So a worker never holds more decoded frames than the budget, however
    many files are in flight.
    """

    _END = object()

    def __init__(
        self,
        path: Source,
        info: MediaInfo,
        sampling: Sampling,
        max_frames: int,
        queue_size: int = 32,
        budget: threading.Semaphore | None = None,
        frames: tuple[int, int | None] | None = None,
    ):
        self.path, self.info, self.max_frames = path, info, max_frames
        self.budget = budget
        self.step = sampling.step(info.fps or 1.0)
        # Only frames [start, end) of a video (a segment; end None: to the end). Sampling stays aligned to the
        # whole video: frame i is sampled when i % step == 0, so segments sample exactly what one pass does.
        self.start, self.end = frames or (0, None)
        self.decode_seconds = 0.0
        self.frames_read = 0
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="decoder", daemon=True)

    def __iter__(self) -> Iterator[Frame]:
        for batch in self.batches(1):
            yield from batch

    def batches(self, size: int) -> Iterator[list[Frame]]:
        """Frames in batches of up to ``size``: waits for the first frame, then takes what is ready.

        Inference never idles waiting to fill a batch while the decoder is behind,
        and batches fill up whenever the decoder is ahead.
        """
        self._thread.start()
        try:
            done = False
            while not done:
                batch: list[Frame] = []
                item = self._queue.get()
                while True:
                    if item is self._END:
                        done = True
                        break
                    if isinstance(item, BaseException):
                        raise item
                    batch.append(item)  # type: ignore[arg-type]
                    if len(batch) == size:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    yield batch
        finally:
            self._stop.set()
            self._thread.join(timeout=5)
            while True:  # frames decoded but never consumed give their permits back
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, Frame):
                    self.release(1)

    def release(self, frames: int) -> None:
        """Give back the budget of ``frames`` consumed frames."""
        if self.budget is not None:
            for _ in range(frames):
                self.budget.release()

    def _take(self) -> bool:
        """One permit of the budget for the next decoded frame; False when stopping."""
        if self.budget is None:
            return True
        while not self._stop.is_set():
            if self.budget.acquire(timeout=0.1):
                return True
        return False

    def _put_frame(self, frame: Frame) -> bool:
        if self._put(frame):
            return True
        self.release(1)
        return False

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            if self.info.kind == "image":
                if not self._take():
                    return
                if not isinstance(self.path, Path):
                    raise ValueError("an image is read from a downloaded file, not in ranges")
                started = time.perf_counter()
                try:
                    image = cv2.imread(str(self.path), cv2.IMREAD_COLOR)
                except BaseException:
                    self.release(1)
                    raise
                self.decode_seconds += time.perf_counter() - started
                self.frames_read = 1
                if image is None:  # probe() read it; it changed or vanished since
                    self.release(1)
                    raise PermanentError(f"corrupt or unreadable {self.info.format} image")
                self._put_frame(Frame(0, 0.0, image))
            else:
                self._read_video()
            self._put(self._END)
        except BaseException as error:  # noqa: BLE001 - handed to the consuming thread
            self._put(error)

    def _read_video(self) -> None:
        capture = open_capture(self.path)
        fps = self.info.fps or 1.0
        sampled = 0
        try:
            index = self._seek(capture)
            while not self._stop.is_set() and sampled < self.max_frames and (self.end is None or index < self.end):
                sampled_here = index % self.step == 0
                if sampled_here and not self._take():
                    return
                started = time.perf_counter()
                if sampled_here:
                    ok, image = capture.read()
                else:
                    ok, image = capture.grab(), None
                self.decode_seconds += time.perf_counter() - started
                if not ok:
                    if sampled_here:
                        self.release(1)
                    break
                self.frames_read += 1
                if image is not None:
                    sampled += 1
                    if not self._put_frame(Frame(index, round(index / fps, 4), image)):
                        return
                index += 1
        finally:
            capture.release()
        raise_read_failure(self.path)  # a read that failed ended the decoder's file early: its error, not "truncated"
        if self.frames_read == 0:
            raise PermanentError(f"{self.info.format} video has no decodable frames (empty or truncated)")
        expected = self.info.frame_count
        if self.start or self.end is not None:
            expected = max(0, (expected if self.end is None else min(self.end, expected)) - self.start)
        if sampled < self.max_frames and expected and self.frames_read < TRUNCATION_TOLERANCE * expected:
            where = "" if not (self.start or self.end is not None) else f" in frames [{self.start}, {self.end or self.info.frame_count})"
            raise PermanentError(
                f"truncated {self.info.format} video: decoded {self.frames_read} of the {expected} frames its header lists{where}"
            )

    def _seek(self, capture: cv2.VideoCapture) -> int:
        """Position ``capture`` at frame ``start``; the index of the next frame it reads.

        OpenCV seeks by frame number; where the container cannot (it lands elsewhere), the frames before
        ``start`` are passed over with ``grab()`` instead, which is exact for every format.
        """
        if not self.start:
            return 0
        started = time.perf_counter()
        if capture.set(cv2.CAP_PROP_POS_FRAMES, self.start) and int(capture.get(cv2.CAP_PROP_POS_FRAMES)) == self.start:
            self.decode_seconds += time.perf_counter() - started
            return self.start
        capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
        index = 0
        while index < self.start and capture.grab():
            index += 1
        self.decode_seconds += time.perf_counter() - started
        return index
