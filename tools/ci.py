"""Run the checks in parallel lanes and print the time each took: what `make test`, `make test-fast` and CI run.

Each check writes its output to build/ci/<check>.log; a failed check's log tail is printed. The lanes run side by
side, the checks of one lane one after another: the CPU-bound Terraform and checkov runs share a lane, so that
they do not starve the worker-process tests (which mostly wait on timeouts) of the machine's cores.

    python -m tools.ci                       # every check (make test, .ci/run)
    python -m tools.ci --only lint,unit      # make test-fast
    python -m tools.ci --only workers -- -k sigterm   # one tier, extra pytest arguments
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "build" / "ci"
PYTEST = [str(ROOT / ".venv" / "bin" / "pytest"), "-p", "no:cacheprovider", "-q", "--durations=15"]
# pytest-xdist processes per tier. Worker-process tests mostly wait (leases, visibility timeouts), so more
# processes than cores pay; the integration tier is CPU-bound (TensorFlow, moto) and gets one per core.
# The e2e tier's tests of the applied stack share one process (one apply); the soak runs beside them.
XDIST = {"unit": 0, "integration": 2, "workers": 4, "e2e": 2}


@dataclass(frozen=True)
class Check:
    name: str
    commands: tuple[tuple[str, ...], ...]
    tier: str | None = None  # a pytest tier: its summary line is read


def tier(name: str, extra: Sequence[str] = ()) -> Check:
    workers = XDIST[name]
    parallel = ("-n", str(workers), "--dist", "loadgroup") if workers else ()
    return Check(name, ((*PYTEST, "-m", name, *parallel, *extra),), tier=name)


def make(*targets: str) -> tuple[str, ...]:
    return ("make", "--no-print-directory", *targets)


def checks(extra: Sequence[str]) -> dict[str, Check]:
    return {
        "lint": Check("lint", (make("lint"),)),
        "terraform": Check("terraform", (make("tf-fmt"), make("tf-validate"), make("tf-test"))),
        "checkov": Check("checkov", (make("checkov"),)),
        "ami": Check("ami", (make("ami-check"),)),
        **{name: tier(name, extra) for name in XDIST},
    }


# Lanes run side by side; a lane's checks one after another, in this order.
LANES = (("lint", "terraform", "checkov", "ami"), ("unit", "integration"), ("workers",), ("e2e",))


@dataclass
class Outcome:
    check: Check
    returncode: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    summary: str = ""


SUMMARY = re.compile(r"(\d+) (passed|failed|errors?|skipped|deselected|xfailed|xpassed)")


def pytest_counts(log: str) -> tuple[dict[str, int], str]:
    """The counts in pytest's closing line ('== 3 failed, 115 passed in 12.3s ==') and the line itself."""
    for line in reversed(log.splitlines()):
        found = SUMMARY.findall(line)
        if found and " in " in line:
            counts: dict[str, int] = {}
            for number, word in found:
                key = "error" if word.startswith("error") else word
                counts[key] = counts.get(key, 0) + int(number)
            return counts, line.strip("= ")
    return {}, ""


def run(check: Check, lock: threading.Lock) -> Outcome:
    LOGS.mkdir(parents=True, exist_ok=True)
    log_path = LOGS / f"{check.name}.log"
    started = time.monotonic()
    with lock:
        print(f"[ci] {check.name}: started", flush=True)
    returncode, cpu = 0, 0.0
    with log_path.open("w") as log:
        for command in check.commands:
            log.write(f"$ {' '.join(command)}\n")
            log.flush()
            process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            # wait4: this command's own CPU time (its waited-for children's included), though lanes run side by side.
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = returncode = os.waitstatus_to_exitcode(status)
            cpu += usage.ru_utime + usage.ru_stime
            if returncode:
                break
    outcome = Outcome(check, returncode, time.monotonic() - started, cpu)
    text = log_path.read_text(errors="replace")
    if check.tier:
        outcome.counts, outcome.summary = pytest_counts(text)
        if returncode == 5 and not outcome.counts.get("passed"):  # pytest: nothing collected in this tier
            outcome.returncode = 0
    with lock:
        verdict = "ok" if outcome.returncode == 0 else f"FAILED (exit {returncode})"
        print(f"[ci] {check.name}: {verdict} in {outcome.seconds:.0f} s ({outcome.cpu_seconds:.0f} s CPU) {outcome.summary}", flush=True)
        if outcome.returncode:
            tail = text.splitlines()[-150:]
            print(f"----- last {len(tail)} lines of {log_path.relative_to(ROOT)} -----", *tail, "-----", sep="\n", flush=True)
    return outcome


def run_lanes(lanes: Sequence[Sequence[Check]]) -> list[Outcome]:
    lock = threading.Lock()
    outcomes: list[Outcome] = []

    def lane(checks_in_lane: Sequence[Check]) -> None:
        for check in checks_in_lane:
            outcome = run(check, lock)
            outcomes.append(outcome)

    threads = [threading.Thread(target=lane, args=(lane_checks,)) for lane_checks in lanes if lane_checks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def report(outcomes: Sequence[Outcome], wall: float) -> int:
    print("\n[ci] time per check (lanes ran side by side):")
    print(f"  {'check':<12} {'result':<8} {'seconds':>8} {'CPU s':>8}  tests")
    order = {name: n for n, name in enumerate(name for lane in LANES for name in lane)}
    for outcome in sorted(outcomes, key=lambda o: order.get(o.check.name, 99)):
        result = "ok" if outcome.returncode == 0 else "FAILED"
        print(f"  {outcome.check.name:<12} {result:<8} {outcome.seconds:>8.0f} {outcome.cpu_seconds:>8.0f}  {outcome.summary}")
    print(f"  {'wall':<12} {'':<8} {wall:>8.0f} {sum(o.cpu_seconds for o in outcomes):>8.0f}")
    passed = sum(o.counts.get("passed", 0) for o in outcomes)
    failed = sum(o.counts.get("failed", 0) + o.counts.get("error", 0) for o in outcomes)
    skipped = sum(o.counts.get("skipped", 0) for o in outcomes)
    broken = [o.check.name for o in outcomes if o.returncode]
    if broken:
        print(f"[ci] failed: {', '.join(broken)} (logs in {LOGS.relative_to(ROOT)}/)")
    if any(o.check.tier for o in outcomes):
        print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if broken else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated checks to run (default: all): " + ", ".join(checks(()).keys()))
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments for the tiers (after --)")
    args = parser.parse_args(argv)
    available = checks(args.pytest_args)
    wanted = args.only.split(",") if args.only else list(available)
    unknown = [name for name in wanted if name not in available]
    if unknown:
        parser.error(f"unknown check(s) {', '.join(unknown)}; choose from {', '.join(available)}")
    lanes = [[available[name] for name in lane if name in wanted] for lane in LANES]
    started = time.monotonic()
    outcomes = run_lanes(lanes)
    return report(outcomes, time.monotonic() - started)


if __name__ == "__main__":
    sys.exit(main())
