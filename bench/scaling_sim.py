"""Discrete-event simulation: this scaler against the original guide's policy and this project's previous one.

All policies drive the same model of AWS: a GPU instance runs one worker
task; from launch it takes ``boot + image pull + model load`` before it
polls; a file takes a lognormal processing time; a killed worker's message
comes back after the visibility timeout.

- **this scaler** (``scaler.decision.decide``, the module's default policy:
  backlog per task): reads the queue every minute and when the router wakes it
  (seconds after an upload), counts in-flight messages, scales out at once,
  scales in only after the cooldown, holds one task warm for the idle period,
  and only removes idle workers (task scale-in protection).
- **previous table** (this project's decision before backlog-per-task, kept
  here as ``previous_decide``): the same inputs, but exact capacity from the
  table on every reading, up or down, with no cooldown, and wake-ups that did
  not say how many messages the router had sent.
- **guide alarm** (the original guide): a CloudWatch alarm on visible
  messages, 5-minute period (Average), seen after CloudWatch's metric lag,
  setting an Auto Scaling group's exact capacity from the table; scale-in
  picks instances without knowing which are busy.

The scaler's and the previous table's readings of the queue lag: on AWS,
``ApproximateNumberOf*`` is eventually consistent and can be up to about a
minute old, so each reading returns the queue as it was a uniformly random
0..``queue_lag`` seconds earlier. ECS's counts (tasks, protection) do not lag.

Run: ``make simulate`` (or ``python -m bench.scaling_sim``).
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import itertools
import math
import random
import statistics
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from pipeline_core.pipeline import DEFAULT_SCALING, ScalingPolicy
from scaler.decision import Observation, State, decide

GUIDE_TABLE = ((1, 1), (100, 2))  # the original guide: 1 task from 1 visible message, 2 from 100
PREVIOUS_DEFAULT_TABLE = ((1, 1), (25, 2), (50, 3), (100, 4))  # this module's default table before backlog per task
SEEDS = (11, 12, 13)


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
    queue_lag: float = 60.0  # ApproximateNumberOf* read directly can be this old
    alarm_period: float = 300.0  # the baseline alarm's period
    metric_lag: float = 180.0  # SQS metrics reach CloudWatch minutes late

    @property
    def cold_start(self) -> float:
        return self.boot + self.image_pull + self.model_load


@dataclass(frozen=True)
class Contender:
    """A policy: ``ours`` (decide), ``previous`` (previous_decide), ``alarm`` (the guide), or ``warm``: max
    tasks ready from the start and never stopped, the bound no policy at that max can beat on latency."""

    label: str
    kind: str
    policy: ScalingPolicy


def previous_decide(obs: Observation, policy: ScalingPolicy, idle_since: float | None) -> tuple[int, float | None]:
    """This project's decision before backlog per task: exact capacity from the table on every reading."""
    if obs.backlog > 0:
        desired, idle_since = min(max(policy.tasks_for(obs.backlog), policy.min_tasks), policy.max_tasks), None
    else:
        idle_since = obs.now if idle_since is None else idle_since
        if obs.now - idle_since >= policy.idle_seconds:
            desired = policy.min_tasks
        else:
            desired = min(max(obs.desired, policy.min_tasks), policy.max_tasks)
    return max(desired, obs.busy), idle_since


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
    end: float = 0.0
    changes: list[tuple[float, int, int]] = field(default_factory=list)  # (time, from, to) of the desired count
    idle_scale_ins: list[float] = field(default_factory=list)  # this scaler's moves to min after the idle period
    timeline: list[tuple[float, int, int, int]] = field(default_factory=list)  # (time, backlog, desired, instances) each minute

    def p(self, q: float) -> float:
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def flaps_per_hour(self) -> float:
        return len(self.changes) / (self.end / 3600) if self.end else 0.0

    @property
    def scale_ins(self) -> list[float]:
        return [time for time, old, new in self.changes if new < old]

    def most_scale_ins_within(self, window: float, idle_too: bool = True) -> int:
        """The most scale-ins in any span shorter than ``window`` seconds (with or without the moves to min after idle)."""
        times = self.scale_ins if idle_too else [t for t in self.scale_ins if t not in set(self.idle_scale_ins)]
        return max((bisect.bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


class Simulation:
    def __init__(self, arrivals: list[float], aws: AwsModel, contender: Contender, seed: int = 7):
        self.arrivals, self.aws, self.contender, self.policy = arrivals, aws, contender, contender.policy
        self.rng = random.Random(seed)
        self.lag_rng = random.Random(seed + 1000)
        self.events: list[tuple[float, int, str, tuple]] = []
        self.counter = itertools.count()
        self.visible: deque[int] = deque()
        self.in_flight: set[int] = set()  # held by a worker, or by a killed one until its visibility times out
        self.slots: list[Slot] = []
        self.uploaded: dict[int, float] = {}
        self.done: dict[int, float] = {}
        self.desired = 0
        self.state = State()
        self.idle_since: float | None = None
        self.visible_samples: list[tuple[float, int]] = []
        self.history: tuple[list[float], list[int], list[int]] = ([0.0], [0], [0])  # queue counts as they changed
        self.changes: list[tuple[float, int, int]] = []
        self.idle_scale_ins: list[float] = []
        self.timeline: list[tuple[float, int, int, int]] = []
        self.killed = 0

    # --- event plumbing ----------------------------------------------------------

    def at(self, time: float, kind: str, *args: object) -> None:
        heapq.heappush(self.events, (time, next(self.counter), kind, args))

    def run(self, horizon: float) -> Outcome:
        for index, time in enumerate(self.arrivals):
            self.at(time, "arrive", index)
        if self.contender.kind == "warm":
            for _ in range(self.policy.max_tasks):
                self._launch(-self.aws.cold_start)
            self.desired = self.policy.max_tasks
        else:
            self.at(0.0, "tick")
        self.at(0.0, "sample")
        now = 0.0
        while self.events:
            now, _, kind, args = heapq.heappop(self.events)
            if now > horizon or (len(self.done) == len(self.arrivals) and not self._active() and now > self.arrivals[-1]):
                break
            getattr(self, f"on_{kind}")(now, *args)
            times, visible, in_flight = self.history
            if (visible[-1], in_flight[-1]) != (len(self.visible), len(self.in_flight)):
                times.append(now), visible.append(len(self.visible)), in_flight.append(len(self.in_flight))
        return self._outcome(now)

    def _active(self) -> list[Slot]:
        return [slot for slot in self.slots if slot.ended is None]

    def _queue_at(self, time: float) -> tuple[int, int]:
        """Visible and in-flight counts as they were at ``time``."""
        times, visible, in_flight = self.history
        index = max(0, bisect.bisect_right(times, time) - 1)
        return visible[index], in_flight[index]

    # --- the world ---------------------------------------------------------------------

    def on_arrive(self, now: float, file: int) -> None:
        self.uploaded[file] = now
        self.visible.append(file)
        self._dispatch(now)
        if self.contender.kind in ("ours", "previous"):
            self.at(now + self.aws.wake_delay, "decide", 1)  # the router's wake-up, with the one message it sent

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
        if self.contender.kind == "alarm":
            self._baseline_alarm(now)
        else:
            self.on_decide(now)
        self.at(now + self.aws.scaler_period, "tick")

    def on_decide(self, now: float, sent: int = 0) -> None:
        """This scaler, or the previous table decision: on the queue as read now (lagging), and ECS as it is."""
        active = self._active()
        ready = [slot for slot in active if slot.ready_at <= now]
        busy = sum(1 for slot in active if slot.job is not None)
        visible, in_flight = self._queue_at(now - self.lag_rng.uniform(0, self.aws.queue_lag))
        observation = Observation(
            visible=visible,
            in_flight=in_flight,
            delayed=0,
            running=len(ready),
            pending=len(active) - len(ready),
            desired=self.desired,
            protected=busy,
            now=now,
            just_sent=sent if self.contender.kind == "ours" else 0,  # the previous router sent no count
        )
        if self.contender.kind == "ours":
            decision = decide(observation, self.policy, self.state)
            self.state, desired = decision.state, decision.desired
            if desired < self.desired and "scale to min" in decision.reason:
                self.idle_scale_ins.append(now)
        else:
            desired, self.idle_since = previous_decide(observation, self.policy, self.idle_since)
        self._set_desired(now, desired)
        self._apply(now, protect_busy=True)

    def on_sample(self, now: float) -> None:
        self.visible_samples.append((now, len(self.visible)))
        self.timeline.append((now, len(self.visible) + len(self.in_flight), self.desired, len(self._active())))
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
        for threshold, tasks in self.policy.table or ():
            if average >= threshold:
                wanted = tasks
        self._set_desired(now, min(max(wanted, self.policy.min_tasks), self.policy.max_tasks))
        self._apply(now, protect_busy=False)

    def _set_desired(self, now: float, desired: int) -> None:
        if desired != self.desired:
            self.changes.append((now, self.desired, desired))
            self.desired = desired

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
            instance_hours=sum((slot.ended or end) - max(slot.launched, 0.0) for slot in self.slots) / 3600,
            idle_hours=sum(slot.idle_total for slot in self.slots) / 3600,
            end=end,
            changes=self.changes,
            idle_scale_ins=self.idle_scale_ins,
            timeline=self.timeline,
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


def large(rng: random.Random) -> list[float]:
    """20,000 files within an hour (Poisson), for up to 50 tasks at a median 20 s per file."""
    return sorted(rng.uniform(0, 3600) for _ in range(20_000))


def _poisson(rng: random.Random, start: float, end: float, mean_gap: float) -> list[float]:
    times, now = [], start
    while (now := now + rng.expovariate(1 / mean_gap)) < end:
        times.append(now)
    return times


TRACES: dict[str, Callable[[random.Random], list[float]]] = {"burst": burst, "trickle": trickle, "daily": daily}
LARGE_MAX = 50
LARGE_AWS = replace(AwsModel(), process_median=20.0)
# A table written for 50 tasks, one more task per 25 messages (the previous default table's first spacing).
TABLE_TO_50 = ((1, 1), *((25 * (tasks - 1), tasks) for tasks in range(2, LARGE_MAX + 1)))


def guide_contenders() -> list[Contender]:
    """At the guide's capacity (max 2)."""
    guide = replace(DEFAULT_SCALING, table=GUIDE_TABLE, max_tasks=2, scale_in_cooldown_seconds=0)
    return [
        Contender("this scaler", "ours", replace(DEFAULT_SCALING, max_tasks=2)),
        Contender("previous table", "previous", guide),
        Contender("guide alarm", "alarm", guide),
        Contender("bound: 2 warm throughout", "warm", guide),
    ]


def large_contenders() -> list[Contender]:
    """At 50 tasks: the previous decision with the default table as shipped, and with a table written for 50."""
    return [
        Contender("this scaler", "ours", replace(DEFAULT_SCALING, max_tasks=LARGE_MAX)),
        Contender("previous table, written for 50", "previous", replace(DEFAULT_SCALING, table=TABLE_TO_50, max_tasks=LARGE_MAX)),
        Contender("previous table, default rows", "previous", replace(DEFAULT_SCALING, table=PREVIOUS_DEFAULT_TABLE, max_tasks=LARGE_MAX)),
        Contender("guide alarm, written for 50", "alarm", replace(DEFAULT_SCALING, table=TABLE_TO_50, max_tasks=LARGE_MAX)),
        Contender(f"bound: {LARGE_MAX} warm throughout", "warm", replace(DEFAULT_SCALING, max_tasks=LARGE_MAX)),
    ]


def simulate(arrivals: list[float], aws: AwsModel, contender: Contender, seed: int) -> Outcome:
    return Simulation(arrivals, aws, contender, seed=seed).run(horizon=arrivals[-1] + 12 * 3600)


def compare(seed: int) -> dict[str, list[tuple[Contender, Outcome]]]:
    results = {}
    for name, trace in TRACES.items():
        arrivals = trace(random.Random(seed))
        results[name] = [(c, simulate(arrivals, AwsModel(), c, seed)) for c in guide_contenders()]
    arrivals = large(random.Random(seed))
    results["large"] = [(c, simulate(arrivals, LARGE_AWS, c, seed)) for c in large_contenders()]
    return results


# --- targets -------------------------------------------------------------------------------------


def targets(name: str, runs: list[tuple[Contender, Outcome]]) -> list[tuple[str, bool, str]]:
    """(target, met, figures) for this scaler on one trace."""
    by_label = {contender.label: outcome for contender, outcome in runs}
    ours = by_label["this scaler"]
    checks = [
        ("zero killed", ours.killed == 0, f"{ours.killed}"),
        ("zero unfinished", ours.unfinished == 0, f"{ours.unfinished}"),
    ]

    bound = next(outcome for contender, outcome in runs if contender.kind == "warm")

    def ratio(label: str, what: str, limit: float, measure: Callable[[Outcome], float]) -> tuple[str, bool, str]:
        value, base = measure(ours), measure(by_label[label])
        figure = f"{value / base:.2f}x"
        if what == "p95":  # what no policy at this max can beat: tasks warm from the start
            figure += f" (bound {measure(bound) / base:.2f}x)"
        return (f"{what} <= {limit}x {label}", value <= limit * base, figure)

    def p95(outcome: Outcome) -> float:
        return outcome.p(0.95)

    def hours(outcome: Outcome) -> float:
        return outcome.instance_hours

    if name == "large":
        cooldown = DEFAULT_SCALING.scale_in_cooldown_seconds
        for label in ("previous table, written for 50", "previous table, default rows"):
            checks += [ratio(label, "p95", 0.7, p95), ratio(label, "instance-h", 1.1, hours)]
        most = ours.most_scale_ins_within(cooldown, idle_too=False)
        checks.append((f"<= 1 cooldown scale-in per {cooldown:.0f}s", most <= 1, f"at most {most}"))
        most = ours.most_scale_ins_within(cooldown)
        checks.append((f"<= 1 scale-in of any kind per {cooldown:.0f}s", most <= 1, f"at most {most}"))
    else:
        checks += [ratio("guide alarm", "p95", 0.8 if name == "burst" else 0.5, p95), ratio("guide alarm", "instance-h", 1.2, hours)]
    return checks


def table(results: dict[str, list[tuple[Contender, Outcome]]]) -> list[str]:
    header = "| trace | policy | p50 min | p95 min | instance-h | idle instance-h | killed | unfinished | changes | changes/h | scale-ins |"
    lines = [header, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, runs in results.items():
        for contender, o in runs:
            hours = "n/a | n/a" if contender.kind == "warm" else f"{o.instance_hours:.2f} | {o.idle_hours:.2f}"
            lines.append(
                f"| {name} | {contender.label} | {o.p(0.5) / 60:.1f} | {o.p(0.95) / 60:.1f} | {hours} "
                f"| {o.killed} | {o.unfinished} | {len(o.changes)} | {o.flaps_per_hour:.1f} | {len(o.scale_ins)} |"
            )
    lines.append("")
    for name, runs in results.items():
        marks = ", ".join(f"{label} {figure}: {'ok' if met else 'MISSED'}" for label, met, figure in targets(name, runs))
        lines.append(f"- {name}: {marks}")
    return lines


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compare this scaler with the original guide's policy and the previous table policy.")
    parser.add_argument("--seeds", type=lambda text: [int(s) for s in text.split(",")], default=list(SEEDS))
    args = parser.parse_args(list(argv) if argv is not None else None)
    aws = AwsModel()
    print(
        f"AWS model: cold start {aws.cold_start:.0f}s (boot {aws.boot:.0f} + pull {aws.image_pull:.0f} + load {aws.model_load:.0f}), "
        f"median processing {aws.process_median:.0f}s ({LARGE_AWS.process_median:.0f}s on the large trace), "
        f"queue readings up to {aws.queue_lag:.0f}s old, alarm period {aws.alarm_period:.0f}s, metric lag {aws.metric_lag:.0f}s"
    )
    print(
        f"this scaler: {DEFAULT_SCALING.describe()}, scale-in cooldown {DEFAULT_SCALING.scale_in_cooldown_seconds:.0f}s, "
        f"idle period {DEFAULT_SCALING.idle_seconds:.0f}s; burst, trickle and daily at the guide's capacity "
        f"(max 2, table {[list(row) for row in GUIDE_TABLE]}); large at max {LARGE_MAX}"
    )
    missed = 0
    for seed in args.seeds:
        lines = table(compare(seed))
        missed += sum(line.count("MISSED") for line in lines)
        print("\n".join(["", f"## seed {seed}", "", *lines]))
    print(f"\ntargets missed over {len(args.seeds)} seeds: {missed} (bench/README.md says why)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
