"""The scaling decision for one step, pure: observations in, desired task count and reason out."""

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
    idle_since: float | None  # when the backlog was first seen empty, None while there is work
    now: float

    @property
    def backlog(self) -> int:
        return self.visible + self.in_flight + self.delayed

    @property
    def busy(self) -> int:
        """Tasks at work: protected ones, and at least one per in-flight message that a live task can hold."""
        return max(self.protected, min(self.in_flight, self.running))


@dataclass(frozen=True)
class Decision:
    desired: int
    idle_since: float | None
    reason: str


def decide(obs: Observation, policy: ScalingPolicy) -> Decision:
    """Desired tasks for a step.

    - The backlog counts visible, in-flight and delayed messages, so work in
      progress holds its capacity.
    - With a backlog, the table sets exact capacity within [min, max]: from
      zero it starts exactly what the table says.
    - With none, capacity holds until the backlog has been empty for the idle
      period, then drops to min.
    - Never fewer tasks than are busy.
    """
    backlog = obs.backlog
    if backlog > 0:
        wanted = policy.tasks_for(backlog)
        desired = min(max(wanted, policy.min_tasks), policy.max_tasks)
        idle_since = None
        reason = f"backlog {backlog} ({obs.visible} visible, {obs.in_flight} in flight, {obs.delayed} delayed): table wants {wanted}"
        if desired != wanted:
            reason += f", bounded to [{policy.min_tasks}, {policy.max_tasks}]"
    else:
        idle_since = obs.now if obs.idle_since is None else obs.idle_since
        idle_for = obs.now - idle_since
        if idle_for >= policy.idle_seconds:
            desired = policy.min_tasks
            reason = f"idle {idle_for:.0f}s >= {policy.idle_seconds:.0f}s: scale to min {policy.min_tasks}"
        else:
            desired = min(max(obs.desired, policy.min_tasks), policy.max_tasks)
            reason = f"idle {idle_for:.0f}s < {policy.idle_seconds:.0f}s: hold {desired}"
    if desired < obs.busy:
        reason += f"; keep {obs.busy} busy"
        desired = obs.busy
    return Decision(desired=desired, idle_since=idle_since, reason=reason)
