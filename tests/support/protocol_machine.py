"""The Hypothesis state machine over ``tests.support.protocol_model.Model``: any interleaving of the actors' steps,
with crashes, pauses past the lease, transient and permanent failures, redeliveries, the DLQ and gpupipe retry; the
invariants after every step, and every job ended at quiescence. A rule fires only where it can act (an idle worker
and a visible message, a worker holding a claim, ...), and ``w`` picks among the workers it can act on."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests.support.protocol_model import VISIBILITY, Model, Worker, dynamodb_table

WORKERS = 3
STATS: dict[str, Any] = {"examples": 0, "steps": 0, "ended": {}, "interleavings": set()}

pick = st.integers(0, WORKERS - 1)


def _idle(model: Model) -> list[int]:
    return [i for i, w in enumerate(model.workers) if w.task is None and not w.paused]


def _busy(model: Model) -> list[int]:
    return [i for i, w in enumerate(model.workers) if w.task is not None and not w.paused]


def _of(indexes: list[int], w: int) -> int:
    return indexes[w % len(indexes)]


class ProtocolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.exits = ExitStack()
        self.table = self.exits.enter_context(dynamodb_table())
        self.model: Model | None = None
        self.trace: list[str] = []

    @initialize(segments=st.sampled_from([0, 2, 3]))
    def start(self, segments: int) -> None:
        self.model = Model(self.table, WORKERS, segments)
        self.trace.append(f"segments={segments}")

    @property
    def m(self) -> Model:
        assert self.model is not None
        return self.model

    def _log(self, step: str) -> None:
        self.trace.append(step)

    @precondition(lambda self: self.model is not None and bool(_idle(self.model)) and bool(self.model.visible()))
    @rule(w=pick, message=st.integers(0, 3))
    def receive(self, w: int, message: int) -> None:
        index = _of(_idle(self.m), w)
        self.m.receive(index, message)
        self._log(f"receive{index}")

    @precondition(lambda self: self.model is not None and bool(_busy(self.model)))
    @rule(w=pick, outcome=st.sampled_from([0, 0, 0, 0, 1, 2, 3]))
    def work(self, w: int, outcome: int) -> None:
        index = _of(_busy(self.m), w)
        self.m.work(index, outcome)
        self._log(f"work{index}:{outcome}")

    @precondition(lambda self: self.model is not None and bool(_busy(self.model)))
    @rule(w=pick)
    def heartbeat(self, w: int) -> None:
        index = _of(_busy(self.m), w)
        self.m.heartbeat(index)
        self._log(f"beat{index}")

    @precondition(lambda self: self.model is not None and any(w.task for w in self.model.workers))
    @rule(w=pick)
    def crash(self, w: int) -> None:
        index = _of([i for i, x in enumerate(self.m.workers) if x.task], w)
        self.m.crash(index)
        self._log(f"crash{index}")

    @precondition(lambda self: self.model is not None and bool(_busy(self.model)))
    @rule(w=pick)
    def pause(self, w: int) -> None:
        index = _of(_busy(self.m), w)
        self.m.pause(index)
        self._log(f"pause{index}")

    @precondition(lambda self: self.model is not None and any(w.paused for w in self.model.workers))
    @rule(w=pick)
    def resume(self, w: int) -> None:
        index = _of([i for i, x in enumerate(self.m.workers) if x.paused], w)
        self.m.resume(index)
        self._log(f"resume{index}")

    @rule(seconds=st.sampled_from([1.0, 10.0, VISIBILITY + 1]))
    def tick(self, seconds: float) -> None:
        self.m.tick(seconds)
        self._log(f"tick{seconds:g}")

    @precondition(lambda self: self.model is not None and bool(self.model.dlq))
    @rule()
    def dead_letter(self) -> None:
        self.m.dead_letter()
        self._log("dlq")

    @precondition(lambda self: self.model is not None and self.model.job().status == "failed")
    @rule()
    def retry(self) -> None:
        self.m.retry()
        self._log("retry")

    @invariant()
    def holds(self) -> None:
        if self.model is not None:
            self.model.check()

    def teardown(self) -> None:
        try:
            if self.model is not None:
                job = self.model.quiesce()
                STATS["examples"] += 1
                STATS["steps"] += self.model.steps
                STATS["ended"][job.status.value] = STATS["ended"].get(job.status.value, 0) + 1
                STATS["interleavings"].add(tuple(self.trace))
        finally:
            self.exits.close()


__all__ = ["STATS", "ProtocolMachine", "Worker"]
