"""The scaling simulation's model behaves as described: work is conserved, blind scale-in kills jobs,
queue readings lag, and flaps are counted as the desired count's changes."""

from __future__ import annotations

import random

import pytest

from bench.scaling_sim import TRACES, AwsModel, Contender, Outcome, Simulation, guide_contenders
from pipeline_core.pipeline import ScalingPolicy

pytestmark = pytest.mark.unit

POLICY = ScalingPolicy(table=((1, 1), (100, 2)), max_tasks=2, idle_seconds=180)
OURS, PREVIOUS, ALARM = (Contender("ours", "ours", POLICY), Contender("previous", "previous", POLICY), Contender("alarm", "alarm", POLICY))
# Long jobs: every message is in flight, none visible, while the workers run.
LONG_JOBS = AwsModel(process_median=1200, process_sigma=0.1)


def run(arrivals: list[float], contender: Contender, aws: AwsModel = LONG_JOBS) -> Outcome:
    return Simulation(arrivals, aws, contender, seed=3).run(horizon=arrivals[-1] + 24 * 3600)


def test_this_scaler_finishes_every_file_without_killing_a_worker() -> None:
    outcome = run([0.0, 5.0, 10.0], OURS)
    assert (outcome.killed, outcome.unfinished, len(outcome.latencies)) == (0, 0, 3)
    # From zero the router's wake-up starts a task at once: the first file waits a cold start, not an alarm period.
    assert min(outcome.latencies) >= LONG_JOBS.cold_start
    assert outcome.changes[0] == (2.0, 0, 1)


def test_the_baseline_kills_busy_workers_when_nothing_is_visible() -> None:
    outcome = run([0.0, 5.0, 10.0], ALARM)
    assert outcome.killed >= 1


def test_every_trace_is_conserved_under_every_policy() -> None:
    aws = AwsModel()
    for name, trace in TRACES.items():
        arrivals = trace(random.Random(1))
        for contender in guide_contenders():
            outcome = run(arrivals, contender, aws)
            assert len(outcome.latencies) + outcome.unfinished == len(arrivals), (name, contender.label)
            if contender.kind != "warm":
                assert outcome.instance_hours > outcome.idle_hours >= 0


def test_queue_readings_return_the_queue_as_it_was() -> None:
    simulation = Simulation([0.0, 5.0, 10.0], LONG_JOBS, OURS, seed=3)
    simulation.run(horizon=3600)
    assert simulation._queue_at(-1.0) == (0, 0)
    assert simulation._queue_at(3.0) == (1, 0)
    assert simulation._queue_at(12.0) == (3, 0)
    # The first task is ready after its cold start (launched at 2 s) and takes a message.
    assert simulation._queue_at(2.0 + LONG_JOBS.cold_start + 1) == (2, 1)


def test_flaps_are_changes_of_the_desired_count() -> None:
    outcome = Outcome(end=7200.0, changes=[(0.0, 0, 2), (100.0, 2, 1), (250.0, 1, 2), (390.0, 2, 0), (900.0, 0, 1), (1300.0, 1, 0)])
    assert outcome.flaps_per_hour == 3.0
    assert outcome.scale_ins == [100.0, 390.0, 1300.0]
    assert outcome.most_scale_ins_within(300) == 2  # 100 and 390
    assert outcome.most_scale_ins_within(290) == 1
    outcome.idle_scale_ins = [390.0]
    assert outcome.most_scale_ins_within(300, idle_too=False) == 1


def test_with_lagging_readings_the_table_flaps_and_this_scaler_does_not() -> None:
    # The burst at the guide's capacity: the previous decision follows each noisy reading up and down.
    arrivals = TRACES["burst"](random.Random(1))
    ours, previous = (run(arrivals, contender, AwsModel()) for contender in guide_contenders()[:2])
    assert len(ours.scale_ins) <= 2 < 20 <= len(previous.scale_ins)
