"""Container healthcheck: the worker touches a file while its loop or heartbeat runs.

``python -m worker.health`` exits 0 when ``HEALTH_FILE`` was touched within
``HEALTH_MAX_AGE_SECONDS`` (default 300, above the 100-second heartbeat of a
300-second visibility timeout), 1 otherwise.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

DEFAULT_HEALTH_FILE = "/tmp/worker.alive"


def health_file() -> Path:
    return Path(os.environ.get("HEALTH_FILE", DEFAULT_HEALTH_FILE))


def touch(path: Path | None = None) -> None:
    """Mark the worker alive now; never fails the caller."""
    with contextlib.suppress(OSError):
        (path or health_file()).touch()


def is_healthy(path: Path, max_age: float, now: float | None = None) -> bool:
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return False
    return age <= max_age


def main() -> int:
    max_age = float(os.environ.get("HEALTH_MAX_AGE_SECONDS", "300"))
    return 0 if is_healthy(health_file(), max_age) else 1


if __name__ == "__main__":
    sys.exit(main())
