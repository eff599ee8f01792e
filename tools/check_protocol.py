"""``make check-protocol``: the job protocol's model checker (tests/support/protocol_machine.py) at a larger budget.

Prints the examples (runs from a new job to quiescence), steps and distinct interleavings explored, how the jobs
ended, and each invariant with the number of checks it held for; exits 1 on a violation (after Hypothesis shrinks
it to a minimal sequence of steps, which it prints).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from tests.support.protocol_machine import STATS, ProtocolMachine
from tests.support.protocol_model import INVARIANTS, Model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--steps", type=int, default=60, help="rules per example before quiescence")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    checks = {"count": 0}
    original = Model.check

    def counted(self: Model) -> None:
        checks["count"] += 1
        original(self)

    Model.check = counted  # type: ignore[method-assign]
    started = time.monotonic()
    failure: BaseException | None = None
    try:
        run_state_machine_as_test(
            ProtocolMachine,
            settings=settings(
                max_examples=args.examples,
                stateful_step_count=args.steps,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=args.seed is None,
                database=None,
            ),
        )
    except BaseException as error:  # noqa: BLE001 - reported below, with the figures
        failure = error
    elapsed = time.monotonic() - started
    print(
        f"check-protocol: {STATS['examples']} examples, {STATS['steps']} actor steps, {len(STATS['interleavings'])} distinct "
        f"interleavings, {checks['count']} invariant checks in {elapsed:.0f} s; jobs ended: {dict(sorted(STATS['ended'].items()))}"
    )
    for invariant in INVARIANTS:
        print(f"  {'VIOLATED' if failure and invariant in str(failure) else 'held'}: {invariant}")
    if failure is not None:
        print(f"check-protocol: violation: {failure}", file=sys.stderr)
        return 1
    print("check-protocol: 0 invariant violations, 0 stuck jobs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
