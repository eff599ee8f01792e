"""Routing decisions, pure: which uploads become jobs, and what a job-item change sets off."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline_core.jobs import JobStatus, StepState
from pipeline_core.records import JobRecord


@dataclass(frozen=True)
class Enqueue:
    """Send the job to this step's queue: it is queued already (a root of a new job, or put back by a retry)."""

    step: str


@dataclass(frozen=True)
class Queue:
    """Every step this one runs after has succeeded: queue it (``JobStore.joins.queue``), then send it."""

    step: str
    parents: tuple[str, ...]


@dataclass(frozen=True)
class Finish:
    """The job reached a final status: record it and notify."""

    status: JobStatus
    reason: str = ""


Action = Enqueue | Queue | Finish


def intake_refusal(key: str, input_prefix: str, allowed_suffixes: Sequence[str]) -> str | None:
    """Why an uploaded key does not become a job, or None when it does."""
    if input_prefix and not key.startswith(input_prefix):
        return f"outside the input prefix {input_prefix!r}"
    if key.endswith("/"):
        return "a folder marker, not a file"
    if allowed_suffixes and not key.lower().endswith(tuple(allowed_suffixes)):
        return f"suffix not in {list(allowed_suffixes)}"
    return None


def _states(job: JobRecord | None) -> dict[str, StepState]:
    return {name: step.state for name, step in job.steps.items()} if job is not None else {}


def route(event_name: str, old: JobRecord | None, new: JobRecord | None) -> list[Action]:
    """What a change to a job item sets off (``old`` and ``new``: its images, None for a segment's item or none).

    A new job sends its roots. A step that failed fails the job, and nothing more is queued. A step put back to
    pending by `gpupipe retry` (from failed, or from done with ``--from``) is sent again, and so is every step left
    pending when the job ended (a worker dropped its message: the job had ended); a job reopened while another step
    stays failed fails again, so it still ends. When a step became done (or a retry reopened the job), every
    waiting step whose parents have all succeeded is queued; the job's end
    (its status set by the worker whose step was the last) is announced. The router's own queueing (waiting ->
    pending), a claim, a lease extension or a release sets nothing off, so nothing is sent twice.
    """
    if event_name == "REMOVE" or new is None:
        return []
    new_states, old_states = _states(new), _states(old)
    if event_name == "INSERT":
        return [Enqueue(name) for name in new.states(StepState.PENDING)]
    actions: list[Action] = []
    became_done = False
    for name in new.step_names:
        before, after = old_states.get(name), new_states.get(name)
        if before == after:
            continue
        if after == StepState.FAILED:
            return [Finish(JobStatus.FAILED, f"step {name} failed: {new.steps[name].error or ''}")]
        if before in (StepState.FAILED, StepState.DONE) and after == StepState.PENDING:
            actions.append(Enqueue(name))
        became_done = became_done or after == StepState.DONE
    if new.status == JobStatus.SUCCEEDED and (old is None or old.status != JobStatus.SUCCEEDED):
        return [*actions, Finish(JobStatus.SUCCEEDED)]
    reopened = old is not None and old.ended and not new.ended
    if reopened:
        still_failed = new.states(StepState.FAILED)
        if still_failed:  # a retry of one failed branch while another stays failed: the job cannot succeed
            name = still_failed[0]
            return [Finish(JobStatus.FAILED, f"step {name} failed: {new.steps[name].error or ''}")]
        if new.graph_recorded:  # a step queued before the job ended had its message dropped: send it again
            actions += [Enqueue(name) for name in new.states(StepState.PENDING) if Enqueue(name) not in actions]
    if (became_done or reopened) and not new.ended:
        actions += _ready(new)
    return actions


def _ready(job: JobRecord) -> list[Action]:
    """The steps to queue now: waiting, every parent done. An item made before graphs runs its steps as the chain it
    was made as, each pending from the start: the step after the last done one is sent."""
    done = job.states(StepState.DONE)
    if not job.graph_recorded:
        following = [name for name in job.step_names if name not in done][:1]
        return [Enqueue(name) for name in following if job.steps[name].state == StepState.PENDING and not job.steps[name].attempts]
    graph = job.graph
    return [Queue(name, graph.parents[name]) for name in graph.ready(done, job.states(StepState.WAITING))]
