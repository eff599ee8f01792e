"""Routing decisions, pure: which uploads become jobs, and what a job-item change sets off."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline_core.jobs import JobStatus, StepState, next_step
from pipeline_core.records import JobRecord


@dataclass(frozen=True)
class Enqueue:
    """Send the job to this step's queue."""

    step: str


@dataclass(frozen=True)
class Finish:
    """The job reached a final status: record it and notify."""

    status: JobStatus
    reason: str = ""


Action = Enqueue | Finish


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

    A new job sends its first step; a step that became done sends the next, or
    finishes the job after the last; a step that became failed fails the job; a
    failed step put back to pending (``gpupipe retry``) is sent again. Removals
    and writes that changed no step's state set off nothing, so unrelated updates
    (a lease extension, a retry note, a release to pending) never send twice.
    """
    if event_name == "REMOVE" or new is None:
        return []
    step_names = new.step_names
    new_states = _states(new)
    if event_name == "INSERT":
        first = step_names[0]
        return [Enqueue(first)] if new_states.get(first) == StepState.PENDING else []
    old_states = _states(old)
    actions: list[Action] = []
    for name in step_names:
        before, after = old_states.get(name), new_states.get(name)
        if before == after:
            continue
        if after == StepState.FAILED:
            return [Finish(JobStatus.FAILED, f"step {name} failed: {new.steps[name].error or ''}")]
        if before == StepState.FAILED and after == StepState.PENDING:
            actions.append(Enqueue(name))
        if after == StepState.DONE:
            following = next_step(step_names, name)
            if following is None:
                actions.append(Finish(JobStatus.SUCCEEDED))
            elif new_states.get(following) == StepState.PENDING:
                actions.append(Enqueue(following))
    return actions
