"""Every rule of the scaling decision, one test each, with exact expected outputs."""

from __future__ import annotations

import pytest

from pipeline_core.pipeline import DEFAULT_SCALING, PipelineConfigError, ScalingPolicy
from scaler.decision import Decision, Observation, State, decide

pytestmark = pytest.mark.unit

POLICY = ScalingPolicy(target_backlog_per_task=10, min_tasks=0, max_tasks=4, idle_seconds=600, scale_in_cooldown_seconds=300)
TABLE = ScalingPolicy(table=((1, 1), (100, 2)), min_tasks=0, max_tasks=2, idle_seconds=600, scale_in_cooldown_seconds=300)


def observe(**overrides: float | int) -> Observation:
    values = {"visible": 0, "in_flight": 0, "delayed": 0, "running": 0, "pending": 0, "desired": 0, "protected": 0, "now": 10_000.0}
    values.update(overrides)
    return Observation(**values)


def test_the_default_policy_is_backlog_per_task() -> None:
    assert DEFAULT_SCALING.table is None
    assert [POLICY.tasks_for(backlog) for backlog in (0, 1, 10, 11, 20, 21, 35)] == [0, 1, 1, 2, 2, 3, 4]


@pytest.mark.parametrize(("backlog", "tasks"), [(0, 0), (1, 1), (99, 1), (100, 2), (5000, 2)])
def test_the_table_alternative_sets_exact_capacity(backlog: int, tasks: int) -> None:
    assert TABLE.tasks_for(backlog) == tasks


def test_scale_out_at_once_from_zero() -> None:
    # A backlog of 50 at max 2 gets both tasks in one decision (the table gave one task until 100).
    guide_capacity = ScalingPolicy(max_tasks=2)
    assert decide(observe(visible=50), guide_capacity) == Decision(
        2, State(), "backlog 50 (50 visible, 0 in flight, 0 delayed): 10 per task wants 5, bounded to [0, 2]: scale out 2"
    )
    assert decide(observe(visible=150), TABLE).desired == 2
    assert decide(observe(visible=12, running=1, desired=1), POLICY).desired == 2


def test_in_flight_and_delayed_messages_count_as_backlog() -> None:
    decision = decide(observe(in_flight=15, delayed=6, running=2, desired=2), POLICY, State(idle_since=1.0))
    assert decision == Decision(3, State(), "backlog 21 (0 visible, 15 in flight, 6 delayed): 10 per task wants 3: scale out 3")


def test_cooldown_scale_in_only_after_fewer_were_wanted_continuously_then_in_one_move() -> None:
    # Four tasks; the backlog falls so that 2, then 1, then 2 tasks are wanted.
    first = decide(observe(visible=15, running=4, desired=4, now=1000.0), POLICY)
    assert first == Decision(
        4,
        State(below_since=1000.0, peak=2),
        "backlog 15 (15 visible, 0 in flight, 0 delayed): 10 per task wants 2; fewer wanted for 0s < 300s: hold 4",
    )
    second = decide(observe(visible=5, running=4, desired=4, now=1120.0), POLICY, first.state)
    assert (second.desired, second.state) == (4, State(below_since=1000.0, peak=2))
    third = decide(observe(visible=12, running=4, desired=4, now=1299.0), POLICY, second.state)
    assert (third.desired, third.state) == (4, State(below_since=1000.0, peak=2))
    # 300 s of wanting at most 2: one move to 2 (not to the latest reading's 1), and the clock starts again.
    fourth = decide(observe(visible=3, running=4, desired=4, now=1300.0), POLICY, third.state)
    assert fourth == Decision(
        2,
        State(),
        "backlog 3 (3 visible, 0 in flight, 0 delayed): 10 per task wants 1; at most 2 wanted for 300s >= 300s: scale in to 2",
    )
    # The next scale-in needs a whole new cooldown: at most one scale-in per cooldown.
    fifth = decide(observe(visible=3, running=2, desired=2, now=1360.0), POLICY, fourth.state)
    assert (fifth.desired, fifth.state) == (2, State(below_since=1360.0, peak=1))


def test_any_reading_that_wants_the_current_count_resets_the_cooldown() -> None:
    held = decide(observe(visible=5, running=3, desired=3, now=1000.0), POLICY, State(below_since=800.0, peak=1))
    assert (held.desired, held.state) == (3, State(below_since=800.0, peak=1))
    back_up = decide(observe(visible=30, running=3, desired=3, now=1060.0), POLICY, held.state)
    assert back_up == Decision(3, State(), "backlog 30 (30 visible, 0 in flight, 0 delayed): 10 per task wants 3: hold 3")
    # So 300 s after the first low reading, nothing is removed.
    later = decide(observe(visible=5, running=3, desired=3, now=1100.0), POLICY, back_up.state)
    assert (later.desired, later.state) == (3, State(below_since=1100.0, peak=1))


def test_lag_a_momentary_zero_reading_scales_nothing_in() -> None:
    # ApproximateNumberOf* can read 0 for up to a minute while work is queued: two tasks stay.
    zero = decide(observe(running=2, desired=2, now=1000.0), POLICY)
    assert zero == Decision(
        2, State(idle_since=1000.0, below_since=1000.0, peak=1), "idle 0s < 600s: wants 1 warm; fewer wanted for 0s < 300s: hold 2"
    )
    recovered = decide(observe(visible=18, running=2, desired=2, now=1060.0), POLICY, zero.state)
    assert recovered == Decision(2, State(), "backlog 18 (18 visible, 0 in flight, 0 delayed): 10 per task wants 2: hold 2")
    # Even at idle_seconds 0 (scale to min at once), a zero reading never removes a busy task.
    eager = ScalingPolicy(idle_seconds=0)
    assert decide(observe(running=2, desired=2, protected=2), eager).desired == 2


def test_lag_what_the_router_just_sent_counts_while_the_reading_lags() -> None:
    # Woken by the router with 25 files sent; the queue reading still shows none of them.
    assert decide(observe(just_sent=25), POLICY) == Decision(
        3, State(), "backlog 25 (0 visible, 0 in flight, 0 delayed, 25 just sent): 10 per task wants 3: scale out 3"
    )
    # The reading, once it catches up, is the backlog: the count sent is only a floor.
    assert observe(visible=40, just_sent=25).backlog == 40


def test_idle_keeps_one_warm_through_the_idle_period_then_goes_to_min() -> None:
    warm = decide(observe(running=1, desired=1, now=10_599.0), POLICY, State(idle_since=10_000.0))
    assert warm == Decision(1, State(idle_since=10_000.0), "idle 599s < 600s: wants 1 warm: hold 1")
    zero = decide(observe(running=1, desired=1, now=10_600.0), POLICY, warm.state)
    assert zero == Decision(0, State(idle_since=10_000.0), "idle 600s >= 600s: scale to min 0")
    floor = ScalingPolicy(min_tasks=1, max_tasks=2, idle_seconds=0)
    assert decide(observe(running=2, desired=2), floor).desired == 1
    # min_tasks holds while idle too, even for a service that was left at fewer.
    assert decide(observe(desired=0), ScalingPolicy(min_tasks=2)) == Decision(
        2, State(idle_since=10_000.0), "idle 0s < 180s: wants 2 warm: scale out 2"
    )


def test_new_work_resets_the_idle_clock() -> None:
    decision = decide(observe(visible=1, running=1, desired=1), POLICY, State(idle_since=9_000.0))
    assert decision.state == State()


def test_never_below_busy_tasks() -> None:
    # After the cooldown 1 task is wanted, but 3 are protected mid-job: 3 stay.
    decision = decide(observe(in_flight=3, running=4, desired=4, protected=3, now=1300.0), POLICY, State(below_since=1000.0, peak=1))
    assert decision == Decision(
        3,
        State(),
        "backlog 3 (0 visible, 3 in flight, 0 delayed): 10 per task wants 1; at most 1 wanted for 300s >= 300s: scale in to 1; keep 3 busy",
    )
    # Busy also bounds scale-to-zero at the end of an idle period (a protected task not yet holding a message).
    assert decide(observe(running=1, desired=1, protected=1), POLICY, State(idle_since=0.0)).desired == 1


def test_busy_counts_in_flight_messages_only_up_to_running_tasks() -> None:
    # A dead worker's message is in flight until its visibility times out; no live task holds it.
    assert observe(in_flight=3, running=1).busy == 1
    assert observe(in_flight=0, running=2, protected=1).busy == 1


def test_max_and_min_bound_either_policy() -> None:
    capped = ScalingPolicy(table=((1, 1), (100, 5)), max_tasks=3)
    assert decide(observe(visible=500), capped).reason.endswith("table [[1, 1], [100, 5]] wants 5, bounded to [0, 3]: scale out 3")
    assert decide(observe(visible=1), ScalingPolicy(min_tasks=2, max_tasks=4)).desired == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"table": ()}, "at least one step"),
        ({"table": ((100, 2), (1, 1))}, "strictly increasing"),
        ({"table": ((0, 1),)}, ">= 1"),
        ({"table": ((1, 2), (100, 1))}, "non-decreasing"),
        ({"min_tasks": 3, "max_tasks": 2}, "min_tasks"),
        ({"max_tasks": 0}, "max_tasks >= 1"),
        ({"target_backlog_per_task": 0.5}, "target_backlog_per_task"),
        ({"scale_in_cooldown_seconds": -1}, "scale_in_cooldown_seconds"),
    ],
)
def test_invalid_policies_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(PipelineConfigError, match=message):
        ScalingPolicy(**kwargs)


def test_policies_read_from_the_rendered_definition() -> None:
    assert ScalingPolicy.from_dict({"scaling_table": None, "max_tasks": 50}) == ScalingPolicy(max_tasks=50)
    table = ScalingPolicy.from_dict({"scaling_table": [[1, 1], [100, 2]], "target_backlog_per_task": None, "scale_in_cooldown_seconds": 60})
    assert table == ScalingPolicy(table=((1, 1), (100, 2)), scale_in_cooldown_seconds=60)
