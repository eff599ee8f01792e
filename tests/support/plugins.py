"""Processor plugins the tests load by import path, exactly as a user's plugin would be loaded."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from worker.detection.model import Detection, normalised_box
from worker.errors import PermanentError, TransientError
from worker.media_info import MediaInfoProcessor
from worker.processing import StepContext, StepOutput


class SlowProcessor(MediaInfoProcessor):
    """media-info that takes ``seconds`` and appends a line per run to ``runs_file``."""

    name = "slow"

    def process(self, path: Path, context: StepContext) -> StepOutput:
        runs_file = self.options.get("runs_file")
        if runs_file:
            with open(runs_file, "a") as handle:
                handle.write(f"{context.job_id} {context.attempt} {os.getpid()}\n")
        time.sleep(float(self.options.get("seconds", 0)))
        return super().process(path, context)


class FlakyProcessor(MediaInfoProcessor):
    """Fails transiently, after ``seconds``, until the attempt ``succeed_on_attempt`` (never, when absent)."""

    name = "flaky"

    def process(self, path: Path, context: StepContext) -> StepOutput:
        time.sleep(float(self.options.get("seconds", 0)))
        succeed_on = self.options.get("succeed_on_attempt")
        if succeed_on is None or context.attempt < int(succeed_on):
            raise TransientError(f"simulated throttling on attempt {context.attempt}")
        return super().process(path, context)


def make_slow(options: Mapping[str, Any]) -> SlowProcessor:
    return SlowProcessor(options)


class HangingProcessor(MediaInfoProcessor):
    """Never returns on the attempts listed in ``hang_on_attempts`` (default: the first), like a wedged GPU call."""

    name = "hanging"

    def process(self, path: Path, context: StepContext) -> StepOutput:
        if context.attempt in self.options.get("hang_on_attempts", [1]):
            threading.Event().wait()
        return super().process(path, context)


class SquareDetector:
    """A deterministic detector for tests and benchmarks: the bright square that ``tools.sample_media.long_video`` draws.

    ``seconds_per_frame`` sleeps that long per frame, standing in for GPU time (so two CPU cores are not the limit).
    A plain red frame (``long_video(red_between=...)``) stands for data no decoder can read: a permanent error.
    """

    name = "square"
    version = "1"
    labels = ("square",)
    colour = "bgr"

    def __init__(self, options: Mapping[str, Any]):
        self.seconds_per_frame = float(options.get("seconds_per_frame", 0))

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]:
        if self.seconds_per_frame:
            time.sleep(self.seconds_per_frame * len(frames))
        found = []
        for frame in frames:
            if frame[..., 2].mean() > 200 and frame[..., 1].mean() < 50:
                raise PermanentError("corrupt frame data")
            ys, xs = np.nonzero(frame[..., 1] > 200)
            if len(xs) < 4:
                found.append([])
                continue
            height, width = frame.shape[:2]
            box = normalised_box(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1), width, height)
            found.append([Detection("square", round(len(xs) / (width * height), 4), box)])
        return found
