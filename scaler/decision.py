"""The scaling decision for one step, pure: observations and the last state in, desired task count, state and reason out.

The rules (docs: README "Scaling"):

- **Backlog** is visible + in flight + delayed messages, so work under way holds its capacity; when
  the router wakes the scaler it says how many messages it has just sent, and the backlog is at
  least that, because a reading can lag them by up to about a minute.
- **Wanted** tasks: ``ceil(backlog / target_backlog_per_task)`` by default, or the exact-capacity
  ``scaling_table``'s answer, bounded to [min_tasks, max_tasks].
- **Scale out at once**: when more tasks are wanted than the service has, the service gets them now.
- **Scale in slowly, in one move**: when fewer are wanted, nothing happens until fewer have been
  wanted continuously for ``scale_in_cooldown_seconds``; then capacity drops in one move to the
  highest count wanted during that window, and the clock starts again, so there is at most one
  scale-in per cooldown. Any reading that wants the current count or more resets the clock: a
  momentary low (or zero) reading, as ``ApproximateNumberOf*`` gives when it lags, changes nothing.
- **Idle**: with no backlog at all, one task (or min_tasks) is kept warm; after ``idle_seconds`` with
  no backlog, capacity goes to min_tasks (zero by default) at once: the idle period is that move's wait.
- **Never below busy**: never fewer tasks than are busy (protected, or holding an in-flight message).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline_core.pipeline import ScalingPolicy


@dataclass(frozen=True)
class Observation:
    """What the scaler sees of one step at ``now``."""

    visible: int  # messages waiting
    in_flight: int  # messages received and not yet deleted: work under way
    delayed: int  # messages not yet deliverable
    running: int  # ECS tasks running
    pending: int  # ECS tasks starting (instance booting, image pulling)
    desired: int  # the service's current desired count
    protected: int  # tasks with scale-in protection on: busy
    now: float
    just_sent: int = 0  # messages the router reports it has just sent (a wake-up); 0 on the schedule

    @property
    def backlog(self) -> int:
        return max(self.visible + self.in_flight + self.delayed, self.just_sent)

    @property
    def busy(self) -> int:
        """Tasks at work: protected ones, and at least one per in-flight message that a live task can hold."""
        return max(self.protected, min(self.in_flight, self.running))


@dataclass(frozen=True)
class State:
    """What one decision leaves for the next (kept in the scaler's DynamoDB table)."""

    idle_since: float | None = None  # when the backlog was first seen empty, None while there is work
    below_since: float | None = None  # since when fewer tasks than the current count have been wanted, without a break
    peak: int = 0  # the highest count wanted since below_since


@dataclass(frozen=True)
class Decision:
    desired: int
    state: State
    reason: str


def decide(obs: Observation, policy: ScalingPolicy, state: State = State()) -> Decision:
    """Desired tasks for a step, with the state the next decision needs and the reason in words."""
    now, current = obs.now, obs.desired
    backlog = obs.backlog
    if backlog > 0:
        idle_since = None
        raw = policy.tasks_for(backlog)
        wanted = min(max(raw, policy.min_tasks), policy.max_tasks)
        counts = f"{obs.visible} visible, {obs.in_flight} in flight, {obs.delayed} delayed"
        if obs.just_sent:
            counts += f", {obs.just_sent} just sent"
        reason = f"backlog {backlog} ({counts}): {policy.describe()} wants {raw}"
        if wanted != raw:
            reason += f", bounded to [{policy.min_tasks}, {policy.max_tasks}]"
    else:
        idle_since = now if state.idle_since is None else state.idle_since
        idle_for = now - idle_since
        if idle_for >= policy.idle_seconds:
            reason = f"idle {idle_for:.0f}s >= {policy.idle_seconds:.0f}s: scale to min {policy.min_tasks}"
            return _floor_busy(obs, Decision(policy.min_tasks, State(idle_since=idle_since), reason))
        wanted = min(max(policy.min_tasks, min(current, 1)), policy.max_tasks)
        reason = f"idle {idle_for:.0f}s < {policy.idle_seconds:.0f}s: wants {wanted} warm"

    if wanted >= current:
        verb = "scale out" if wanted > current else "hold"
        return _floor_busy(obs, Decision(wanted, State(idle_since=idle_since), f"{reason}: {verb} {wanted}"))

    # Fewer wanted: only after fewer have been wanted continuously for the cooldown.
    below_since = now if state.below_since is None else state.below_since
    peak = wanted if state.below_since is None else max(state.peak, wanted)
    waited = now - below_since
    cooldown = policy.scale_in_cooldown_seconds
    if waited >= cooldown:
        reason += f"; at most {peak} wanted for {waited:.0f}s >= {cooldown:.0f}s: scale in to {peak}"
        return _floor_busy(obs, Decision(peak, State(idle_since=idle_since), reason))
    reason += f"; fewer wanted for {waited:.0f}s < {cooldown:.0f}s: hold {current}"
    return _floor_busy(obs, Decision(current, State(idle_since=idle_since, below_since=below_since, peak=peak), reason))


def _floor_busy(obs: Observation, decision: Decision) -> Decision:
    if decision.desired >= obs.busy:
        return decision
    return Decision(obs.busy, decision.state, f"{decision.reason}; keep {obs.busy} busy")
