"""Draw docs/images/scaling-timeline.png: the large trace under this scaler, the previous table and the guide's alarm.

The same simulation as ``make simulate`` (bench/scaling_sim.py), one seed: per minute, the true
backlog (visible + in flight) and each policy's desired task count. Run:
``python -m bench.scaling_timeline [--out PATH] [--seed N]``.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterable
from pathlib import Path

import matplotlib.pyplot as plt

from bench.scaling_sim import LARGE_AWS, LARGE_MAX, large, large_contenders, simulate

OUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "scaling-timeline.png"
ZOOM_MINUTES = 15
SHOWN = ("this scaler", "previous table, written for 50", "guide alarm, written for 50")


def draw(out: Path, seed: int) -> list[str]:
    arrivals = large(random.Random(seed))
    runs = [(c, simulate(arrivals, LARGE_AWS, c, seed)) for c in large_contenders() if c.label in SHOWN]
    plt.switch_backend("agg")  # files only, no display
    figure, (backlog_axis, tasks_axis, zoom_axis) = plt.subplots(3, 1, figsize=(10, 9), gridspec_kw={"height_ratios": [2, 2, 1.6]})
    lines = []
    for contender, outcome in runs:
        minutes = [time / 60 for time, *_ in outcome.timeline]
        backlog_axis.plot(minutes, [backlog for _, backlog, _, _ in outcome.timeline], label=contender.label)
        tasks_axis.step(
            [0.0, *(time / 60 for time, _, _ in outcome.changes)],
            [0, *(new for _, _, new in outcome.changes)],
            where="post",
            label=f"{contender.label}: {len(outcome.changes)} changes, p95 {outcome.p(0.95) / 60:.0f} min",
        )
        early = [(time / 60, new) for time, _, new in outcome.changes if time <= ZOOM_MINUTES * 60]
        zoom_axis.step([0.0, *(t for t, _ in early), ZOOM_MINUTES], [0, *(n for _, n in early), early[-1][1] if early else 0], where="post")
        lines.append(f"{contender.label}: {len(outcome.changes)} desired-count changes, p95 {outcome.p(0.95) / 60:.1f} min")
    backlog_axis.set_ylabel("backlog (visible + in flight)")
    backlog_axis.set_title(f"20,000 files in an hour, max {LARGE_MAX} tasks, {LARGE_AWS.process_median:.0f} s per file (seed {seed})")
    backlog_axis.legend(loc="upper right")
    tasks_axis.set_ylabel("desired tasks")
    tasks_axis.set_xlabel("minutes since the first upload")
    backlog_axis.sharex(tasks_axis)
    tasks_axis.legend(loc="lower center", fontsize="small")
    zoom_axis.set_ylabel("desired tasks")
    zoom_axis.set_xlabel(f"the first {ZOOM_MINUTES} minutes: the table flips on every noisy (lagging) reading")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=90)
    plt.close(figure)
    return lines


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(list(argv) if argv is not None else None)
    for line in draw(args.out, args.seed):
        print(line)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
