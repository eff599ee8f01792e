"""Every rule of the scaling decision, one test each."""

from __future__ import annotations

import pytest

from pipeline_core.pipeline import PipelineConfigError, ScalingPolicy
from scaler.decision import Observation, decide

POLICY = ScalingPolicy(table=((1, 1), (100, 2)), min_tasks=0, max_tasks=2, idle_seconds=600)


def observe(**overrides: float | int | None) -> Observation:
    values = {
        "visible": 0,
        "in_flight": 0,
        "delayed": 0,
        "running": 0,
        "pending": 0,
        "desired": 0,
        "protected": 0,
        "idle_since": None,
        "now": 10_000.0,
    }
    values.update(overrides)
    return Observation(**values)


@pytest.mark.parametrize(("backlog", "tasks"), [(0, 0), (1, 1), (99, 1), (100, 2), (5000, 2)])
def test_the_table_sets_exact_capacity(backlog: int, tasks: int) -> None:
    assert POLICY.tasks_for(backlog) == tasks


def test_from_zero_start_exactly_what_the_table_says() -> None:
    assert decide(observe(visible=1), POLICY).desired == 1
    assert decide(observe(visible=150), POLICY).desired == 2
    wide = ScalingPolicy(table=((1, 1), (10, 3), (50, 8)), max_tasks=20)
    assert decide(observe(visible=12), wide).desired == 3


def test_in_flight_messages_count_as_backlog() -> None:
    # The original policy counted visible messages only and scaled busy workers away.
    decision = decide(observe(visible=0, in_flight=1, running=1, desired=1, idle_since=1.0), POLICY)
    assert decision.desired == 1
    assert decision.idle_since is None
    assert "1 in flight" in decision.reason


def test_delayed_messages_count_as_backlog() -> None:
    assert decide(observe(delayed=3), POLICY).desired == 1


def test_max_and_min_bound_the_table() -> None:
    capped = ScalingPolicy(table=((1, 1), (100, 5)), max_tasks=3)
    decision = decide(observe(visible=500), capped)
    assert decision.desired == 3
    assert "bounded to [0, 3]" in decision.reason
    floor = ScalingPolicy(min_tasks=1, max_tasks=2, idle_seconds=0)
    assert decide(observe(idle_since=0.0), floor).desired == 1


def test_empty_backlog_holds_capacity_through_the_idle_period() -> None:
    first_empty = decide(observe(running=2, desired=2), POLICY)
    assert (first_empty.desired, first_empty.idle_since) == (2, 10_000.0)
    still_idle = decide(observe(running=2, desired=2, idle_since=10_000.0, now=10_599.0), POLICY)
    assert still_idle.desired == 2
    assert still_idle.idle_since == 10_000.0
    assert "hold 2" in still_idle.reason


def test_scale_to_zero_only_after_the_idle_period() -> None:
    decision = decide(observe(running=2, desired=2, idle_since=10_000.0, now=10_600.0), POLICY)
    assert decision.desired == 0
    assert "scale to min 0" in decision.reason


def test_new_work_resets_the_idle_clock() -> None:
    decision = decide(observe(visible=1, running=1, desired=1, idle_since=9_000.0), POLICY)
    assert decision.idle_since is None


def test_never_fewer_tasks_than_are_busy() -> None:
    # Backlog 2 wants 1 task, but both running tasks are protected mid-job.
    decision = decide(observe(in_flight=2, running=2, desired=2, protected=2), POLICY)
    assert decision.desired == 2
    assert "keep 2 busy" in decision.reason
    # Busy also bounds scale-to-zero at the end of an idle period (a protected task not yet holding a message).
    assert decide(observe(running=1, desired=1, protected=1, idle_since=0.0), POLICY).desired == 1


def test_busy_counts_in_flight_messages_only_up_to_running_tasks() -> None:
    # A dead worker's message is in flight until its visibility times out; no live task holds it.
    assert observe(in_flight=3, running=1).busy == 1
    assert observe(in_flight=0, running=2, protected=1).busy == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"table": ()}, "at least one step"),
        ({"table": ((100, 2), (1, 1))}, "strictly increasing"),
        ({"table": ((0, 1),)}, ">= 1"),
        ({"table": ((1, 2), (100, 1))}, "non-decreasing"),
        ({"min_tasks": 3, "max_tasks": 2}, "min_tasks"),
    ],
)
def test_invalid_policies_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(PipelineConfigError, match=message):
        ScalingPolicy(**kwargs)
