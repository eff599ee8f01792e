"""``python -m local_runtime.report RUNTIME_LOG``: the scaler's decisions and task changes, one line each."""

from __future__ import annotations

import json
import sys
from pathlib import Path

SHOWN = {"scale", "task started", "task stopping (scale-in)", "scale-in deferred: tasks are protected", "task exited"}


def lines(log: Path) -> list[str]:
    out = []
    start: float | None = None
    for raw in log.read_text().splitlines():
        try:
            entry = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if entry.get("event") not in SHOWN:
            continue
        start = entry["ts"] if start is None else start
        at = f"+{entry['ts'] - start:6.1f}s"
        if entry["event"] == "scale":
            out.append(f"{at}  scaler  {entry['step']}: {entry['from']} -> {entry['to']} tasks ({entry['trigger']}): {entry['reason']}")
        else:
            out.append(f"{at}  ecs     {entry['step']}: {entry['event']} {entry.get('task', '')}".rstrip())
    return out


def main() -> int:
    for line in lines(Path(sys.argv[1])):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
