"""The scaling simulation's model behaves as described: work is conserved, and blind scale-in kills jobs."""

from __future__ import annotations

import random

from bench.scaling_sim import TRACES, AwsModel, Simulation
from pipeline_core.pipeline import ScalingPolicy

POLICY = ScalingPolicy(table=((1, 1), (100, 2)), max_tasks=2, idle_seconds=180)
# Long jobs: every message is in flight, none visible, while the workers run.
LONG_JOBS = AwsModel(process_median=1200, process_sigma=0.1)


def run(arrivals: list[float], ours: bool, aws: AwsModel = LONG_JOBS) -> object:
    return Simulation(arrivals, aws, POLICY, ours=ours, seed=3).run(horizon=arrivals[-1] + 24 * 3600)


def test_this_scaler_finishes_every_file_without_killing_a_worker() -> None:
    outcome = run([0.0, 5.0, 10.0], ours=True)
    assert (outcome.killed, outcome.unfinished, len(outcome.latencies)) == (0, 0, 3)
    # From zero the table says 1 task: the first file waits a cold start, not an alarm period.
    assert min(outcome.latencies) >= LONG_JOBS.cold_start


def test_the_baseline_kills_busy_workers_when_nothing_is_visible() -> None:
    outcome = run([0.0, 5.0, 10.0], ours=False)
    assert outcome.killed >= 1


def test_every_trace_is_conserved_under_both_policies() -> None:
    aws = AwsModel()
    for name, trace in TRACES.items():
        arrivals = trace(random.Random(1))
        for ours in (True, False):
            outcome = run(arrivals, ours, aws)
            assert len(outcome.latencies) + outcome.unfinished == len(arrivals), name
            assert outcome.instance_hours > outcome.idle_hours >= 0
