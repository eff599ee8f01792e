"""Discrete-event simulation: this scaler against the original guide's policy.

Both policies drive the same model of AWS: a GPU instance runs one worker
task; from launch it takes ``boot + image pull + model load`` before it
polls; a file takes a lognormal processing time; a killed worker's message
comes back after the visibility timeout.

- **this scaler** (``scaler.decision.decide``): reads the queue directly every
  minute and when the router wakes it (seconds after an upload), counts
  in-flight messages, holds capacity for the idle period, and only removes
  idle workers (task scale-in protection).
- **baseline** (the original guide): a CloudWatch alarm on visible messages,
  5-minute period (Average), seen after CloudWatch's metric lag, setting an
  Auto Scaling group's exact capacity from the same table; scale-in picks
  instances without knowing which are busy.

Run: ``make simulate`` (or ``python -m bench.scaling_sim``).
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import random
import statistics
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pipeline_core.pipeline import DEFAULT_SCALING, ScalingPolicy
from scaler.decision import Observation, decide

GUIDE_SCALING = ScalingPolicy(table=((1, 1), (100, 2)), min_tasks=0, max_tasks=2, idle_seconds=DEFAULT_SCALING.idle_seconds)


@dataclass(frozen=True)
class AwsModel:
    """Delays, in seconds. Sources for the cold-start figures are in docs/cold-start.md."""

    boot: float = 120.0  # EC2 GPU instance launch to ECS agent registered
    image_pull: float = 180.0  # multi-GB CUDA image from ECR
    model_load: float = 30.0  # weights into GPU memory
    process_median: float = 30.0  # per file, lognormal
    process_sigma: float = 0.6
    visibility_timeout: float = 900.0
    wake_delay: float = 2.0  # router enqueue -> scaler invoked asynchronously
    scaler_period: float = 60.0  # EventBridge schedule
    alarm_period: float = 300.0  # the baseline alarm's period
    metric_lag: float = 180.0  # SQS metrics reach CloudWatch minutes late

    @property
    def cold_start(self) -> float:
        return self.boot + self.image_pull + self.model_load


@dataclass
class Slot:
    """One instance with its one worker task."""

    id: int
    launched: float
    ready_at: float
    job: int | None = None
    job_started: float = 0.0
    idle_from: float | None = None
    ended: float | None = None
    draining: bool = False
    idle_total: float = 0.0


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    killed: int = 0
    unfinished: int = 0
    instance_hours: float = 0.0
    idle_hours: float = 0.0

    def p(self, q: float) -> float:
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Simulation:
    def __init__(self, arrivals: list[float], aws: AwsModel, policy: ScalingPolicy, ours: bool, seed: int = 7):
        self.arrivals, self.aws, self.policy, self.ours = arrivals, aws, policy, ours
        self.rng = random.Random(seed)
        self.events: list[tuple[float, int, str, tuple]] = []
        self.counter = itertools.count()
        self.visible: deque[int] = deque()
        self.in_flight: set[int] = set()  # held by a worker, or by a killed one until its visibility times out
        self.slots: list[Slot] = []
        self.uploaded: dict[int, float] = {}
        self.done: dict[int, float] = {}
        self.desired = 0
        self.idle_since: float | None = None
        self.visible_samples: list[tuple[float, int]] = []
        self.killed = 0
        self.ids = itertools.count()

    # --- event plumbing ----------------------------------------------------------

    def at(self, time: float, kind: str, *args: object) -> None:
        heapq.heappush(self.events, (time, next(self.counter), kind, args))

    def run(self, horizon: float) -> Outcome:
        for index, time in enumerate(self.arrivals):
            self.at(time, "arrive", index)
        self.at(0.0, "tick")
        if not self.ours:
            self.at(0.0, "sample")
        now = 0.0
        while self.events:
            now, _, kind, args = heapq.heappop(self.events)
            if now > horizon or (len(self.done) == len(self.arrivals) and not self._active() and now > self.arrivals[-1]):
                break
            getattr(self, f"on_{kind}")(now, *args)
        return self._outcome(now)

    def _active(self) -> list[Slot]:
        return [slot for slot in self.slots if slot.ended is None]

    # --- the world ---------------------------------------------------------------------

    def on_arrive(self, now: float, file: int) -> None:
        self.uploaded[file] = now
        self.visible.append(file)
        self._dispatch(now)
        if self.ours:
            self.at(now + self.aws.wake_delay, "decide")

    def on_ready(self, now: float, slot_id: int) -> None:
        slot = self.slots[slot_id]
        if slot.ended is None:
            slot.idle_from = now
            self._dispatch(now)

    def on_finish(self, now: float, slot_id: int, file: int) -> None:
        slot = self.slots[slot_id]
        if slot.ended is not None or slot.job != file:
            return  # the instance was terminated mid-job
        self.in_flight.discard(file)
        self.done.setdefault(file, now)
        slot.job, slot.idle_from = None, now
        if slot.draining:
            self._terminate(slot, now)
        self._dispatch(now)

    def on_reappear(self, now: float, file: int) -> None:
        if file in self.in_flight and file not in self.done:
            self.in_flight.discard(file)
            self.visible.appendleft(file)
            self._dispatch(now)

    def _dispatch(self, now: float) -> None:
        """Idle ready workers long-poll: each takes the next visible message at once."""
        for slot in self._active():
            if not self.visible:
                return
            if slot.job is None and slot.ready_at <= now and not slot.draining:
                file = self.visible.popleft()
                self.in_flight.add(file)
                slot.idle_total += now - (slot.idle_from if slot.idle_from is not None else now)
                slot.job, slot.job_started, slot.idle_from = file, now, None
                duration = self.rng.lognormvariate(math.log(self.aws.process_median), self.aws.process_sigma)
                self.at(now + duration, "finish", slot.id, file)

    def _launch(self, now: float) -> None:
        slot = Slot(id=len(self.slots), launched=now, ready_at=now + self.aws.cold_start)
        self.slots.append(slot)
        self.at(slot.ready_at, "ready", slot.id)

    def _terminate(self, slot: Slot, now: float) -> None:
        if slot.job is not None:
            self.killed += 1
            self.at(slot.job_started + self.aws.visibility_timeout, "reappear", slot.job)
            slot.job = None
        if slot.idle_from is not None:
            slot.idle_total += now - slot.idle_from
            slot.idle_from = None
        slot.ended = now

    # --- the policies ----------------------------------------------------------------------

    def on_tick(self, now: float) -> None:
        if self.ours:
            self.on_decide(now)
        else:
            self._baseline_alarm(now)
        self.at(now + self.aws.scaler_period, "tick")

    def on_decide(self, now: float) -> None:
        """This scaler: decide() on what the queue and ECS say now."""
        active = self._active()
        ready = [slot for slot in active if slot.ready_at <= now]
        busy = sum(1 for slot in active if slot.job is not None)
        observation = Observation(
            visible=len(self.visible),
            in_flight=len(self.in_flight),
            delayed=0,
            running=len(ready),
            pending=len(active) - len(ready),
            desired=self.desired,
            protected=busy,
            idle_since=self.idle_since,
            now=now,
        )
        decision = decide(observation, self.policy)
        self.idle_since, self.desired = decision.idle_since, decision.desired
        self._apply(now, protect_busy=True)

    def on_sample(self, now: float) -> None:
        self.visible_samples.append((now, len(self.visible)))
        self.at(now + 60.0, "sample")

    def _baseline_alarm(self, now: float) -> None:
        """The guide: exact capacity from the Average of visible messages over the last complete period, seen late."""
        seen_until = now - self.aws.metric_lag
        period_end = math.floor(seen_until / self.aws.alarm_period) * self.aws.alarm_period
        window = [count for time, count in self.visible_samples if period_end - self.aws.alarm_period <= time < period_end]
        if not window:
            return
        average = statistics.fmean(window)
        wanted = 0
        for threshold, tasks in self.policy.table:
            if average >= threshold:
                wanted = tasks
        self.desired = min(max(wanted, self.policy.min_tasks), self.policy.max_tasks)
        self._apply(now, protect_busy=False)

    def _apply(self, now: float, protect_busy: bool) -> None:
        active = [slot for slot in self._active() if not slot.draining]
        for _ in range(self.desired - len(active)):
            self._launch(now)
        excess = len(active) - self.desired
        if excess <= 0:
            return
        if protect_busy:
            # ECS stops unprotected tasks (booting, then idle); protected ones drain when their job ends.
            order = sorted(active, key=lambda slot: (slot.ready_at <= now, slot.job is not None))
            for slot in order[:excess]:
                if slot.job is None:
                    self._terminate(slot, now)
                else:
                    slot.draining = True
        else:
            # The Auto Scaling group does not know which instances are busy.
            for slot in self.rng.sample(active, excess):
                self._terminate(slot, now)

    def _outcome(self, end: float) -> Outcome:
        for slot in self._active():
            self._terminate(slot, end)
        return Outcome(
            latencies=[self.done[f] - self.uploaded[f] for f in self.done],
            killed=self.killed,
            unfinished=len(self.arrivals) - len(self.done),
            instance_hours=sum((slot.ended or end) - slot.launched for slot in self.slots) / 3600,
            idle_hours=sum(slot.idle_total for slot in self.slots) / 3600,
        )


# --- traces -------------------------------------------------------------------------------------


def burst(rng: random.Random) -> list[float]:
    """500 files uploaded within a minute."""
    return sorted(rng.uniform(0, 60) for _ in range(500))


def trickle(rng: random.Random) -> list[float]:
    """A steady trickle: one file every 8 minutes on average for 8 hours."""
    return _poisson(rng, 0, 8 * 3600, mean_gap=480)


def daily(rng: random.Random) -> list[float]:
    """A day with long idle gaps: a dozen short sessions of a few uploads each, hours apart, nothing at night."""
    hour = 3600.0
    times: list[float] = []
    session = 7 * hour
    while (session := session + rng.uniform(0.5, 2.5) * hour) < 22 * hour:
        times += _poisson(rng, session, session + 600, mean_gap=90)
    return sorted(times)


def _poisson(rng: random.Random, start: float, end: float, mean_gap: float) -> list[float]:
    times, now = [], start
    while (now := now + rng.expovariate(1 / mean_gap)) < end:
        times.append(now)
    return times


TRACES: dict[str, Callable[[random.Random], list[float]]] = {"burst": burst, "trickle": trickle, "daily": daily}


# --- comparison ----------------------------------------------------------------------------------


def compare(policy: ScalingPolicy, aws: AwsModel, seed: int = 11) -> dict[str, tuple[Outcome, Outcome]]:
    results = {}
    for name, trace in TRACES.items():
        arrivals = trace(random.Random(seed))
        horizon = arrivals[-1] + 12 * 3600
        ours = Simulation(arrivals, aws, policy, ours=True, seed=seed).run(horizon)
        base = Simulation(arrivals, aws, policy, ours=False, seed=seed).run(horizon)
        results[name] = (ours, base)
    return results


def targets(name: str, ours: Outcome, base: Outcome) -> list[tuple[str, bool]]:
    """The targets, at equal capacity: no lost work, faster where reaction dominates, similar cost."""
    checks = [
        ("zero killed", ours.killed == 0),
        ("zero unfinished", ours.unfinished == 0),
        ("instance-hours <= 1.25x", ours.instance_hours <= 1.25 * base.instance_hours),
    ]
    if name == "burst":
        checks.append(("p95 no worse", ours.p(0.95) <= base.p(0.95)))
    else:
        checks.append(("p95 <= 0.5x", ours.p(0.95) <= 0.5 * base.p(0.95)))
    return checks


def table(title: str, results: dict[str, tuple[Outcome, Outcome]], check: bool) -> list[str]:
    lines = [title, ""]
    header = "| trace | policy | p50 min | p95 min | instance-h | idle instance-h | killed mid-job | unfinished |"
    lines += [header, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, (ours, base) in results.items():
        for label, outcome in (("this scaler", ours), ("baseline", base)):
            lines.append(
                f"| {name} | {label} | {outcome.p(0.5) / 60:.1f} | {outcome.p(0.95) / 60:.1f} | {outcome.instance_hours:.2f} "
                f"| {outcome.idle_hours:.2f} | {outcome.killed} | {outcome.unfinished} |"
            )
        ratio_p95 = ours.p(0.95) / base.p(0.95) if base.p(0.95) else math.nan
        ratio_hours = ours.instance_hours / base.instance_hours if base.instance_hours else math.nan
        lines.append(f"| {name} | ratio ours/baseline | | {ratio_p95:.2f} | {ratio_hours:.2f} | | | |")
    if check:
        lines.append("")
        for name, (ours, base) in results.items():
            marks = ", ".join(f"{label}: {'ok' if passed else 'MISSED'}" for label, passed in targets(name, ours, base))
            lines.append(f"- {name}: {marks}")
    return lines


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compare this scaler with the original guide's policy.")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(list(argv) if argv is not None else None)
    aws = AwsModel()
    print(
        f"AWS model: cold start {aws.cold_start:.0f}s (boot {aws.boot:.0f} + pull {aws.image_pull:.0f} + load {aws.model_load:.0f}), ",
        end="",
    )
    print(f"median processing {aws.process_median:.0f}s, alarm period {aws.alarm_period:.0f}s, metric lag {aws.metric_lag:.0f}s")
    print(f"idle period before scale to zero: {DEFAULT_SCALING.idle_seconds:.0f}s\n")
    equal = table(
        f"At the guide's capacity: table {list(GUIDE_SCALING.table)}, max {GUIDE_SCALING.max_tasks}",
        compare(GUIDE_SCALING, aws, args.seed),
        True,
    )
    module = table(
        f"At the module's default: table {list(DEFAULT_SCALING.table)}, max {DEFAULT_SCALING.max_tasks}",
        compare(DEFAULT_SCALING, aws, args.seed),
        False,
    )
    print("\n".join([*equal, "", *module]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
