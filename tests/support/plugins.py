"""Processor plugins the tests load by import path, exactly as a user's plugin would be loaded."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from worker.errors import TransientError
from worker.processors import MediaInfoProcessor, StepContext, StepOutput


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
