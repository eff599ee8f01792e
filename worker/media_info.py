"""``media-info``: a processor that checks the input is media and reports its type, size and digest."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from worker.mediatype import DEFAULT_MAX_PIXELS, require_media
from worker.processing import StepContext, StepOutput


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
