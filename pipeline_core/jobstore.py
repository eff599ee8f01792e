"""DynamoDB I/O for job items: every state change is one conditional update.

The conditions encode ``jobs.STEP_TRANSITIONS``: a step is claimed only while
pending (or running under an expired lease), and only the worker holding the
claim, for the attempt it claimed, can extend, finish, fail or release it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from pipeline_core.jobs import (
    JobStatus,
    ObjectRef,
    StepState,
    new_job_item,
)
from pipeline_core.segments import Segment, segment_key


def to_dynamo(value: Any) -> Any:
    """Floats become Decimals, recursively, as the DynamoDB resource API requires."""
    if isinstance(value, float):
        return Decimal(str(round(value, 6)))
    if isinstance(value, Mapping):
        return {k: to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_dynamo(v) for v in value]
    return value


def from_dynamo(value: Any) -> Any:
    """Decimals become ints or floats, recursively."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    return value


def is_conditional_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


@dataclass(frozen=True)
class Claim:
    """A worker's hold on one step of one job (or one segment of a split step), for one attempt."""

    job_id: str
    step: str
    worker_id: str
    attempt: int  # the fencing token: every claim of a step (or segment) gets a new, higher number
    step_names: tuple[str, ...]
    failures: int = 0  # transient failures counted against the step's retry budget before this attempt
    segment: int | None = None  # the claim holds this segment of a split step (its own sub-item)
    merging: bool = False  # the claim holds a split step whose segments are all done, to merge them
    span: Segment | None = None  # the claimed segment's range, as the job item records it
    message_id: str = ""  # the message (its chain's origin id) the claim was made through
    retried_at: float | None = None  # when `gpupipe retry` last put the claimed step back, as the claim found it

    @property
    def is_last_step(self) -> bool:
        return self.step_names[-1] == self.step

    @property
    def path(self) -> tuple[str, dict[str, str]]:
        """The claimed sub-item's path in update expressions, and the names it uses."""
        return _path(self.step, self.segment)


def _path(step: str, segment: int | None) -> tuple[str, dict[str, str]]:
    if segment is None:
        return _STEP, {"#step": step}
    return f"{_STEP}.#segments.#seg", {"#step": step, "#segments": "segments", "#seg": segment_key(segment)}


class Unclaimable(StrEnum):
    """Why a step could not be claimed, and so what to do with its message."""

    NO_JOB = "no-job"  # the message names a job that does not exist: drop it
    NO_STEP = "no-step"  # the job has no such step: drop it
    FINISHED = "finished"  # step done or failed, or job over: a redelivery, drop it
    HELD_BY_OTHER_MESSAGE = "held-by-other-message"  # a duplicate message: the holder has its own, drop this one
    HELD_BY_THIS_MESSAGE = "held-by-this-message"  # SQS redelivered the message the holder works on: keep it, retry after the lease
    SPLIT = "split"  # the step was split into segments: its own message is settled, the segments' messages do the work
    SEGMENTS_LEFT = "segments-left"  # a merge was asked for while segments are still to finish: the last one merges


def classify_unclaimable(item: Mapping[str, Any] | None, step: str, message_id: str, segment: int | None = None) -> Unclaimable:
    """Why ``step`` (or its ``segment``) of ``item`` could not be claimed by the message ``message_id``."""
    if item is None:
        return Unclaimable.NO_JOB
    status = item.get("steps", {}).get(step)
    if status is None:
        return Unclaimable.NO_STEP
    if status.get("state") in (StepState.DONE, StepState.FAILED) or item.get("status") in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        return Unclaimable.FINISHED
    if segment is not None:
        status = (status.get("segments") or {}).get(segment_key(segment))
        if status is None:
            return Unclaimable.NO_STEP
        if status.get("state") in (StepState.DONE, StepState.FAILED):
            return Unclaimable.FINISHED
    elif status.get("segment_count") and not status.get("worker_id"):
        return Unclaimable.SPLIT
    if status.get("message_id") == message_id:
        return Unclaimable.HELD_BY_THIS_MESSAGE
    return Unclaimable.HELD_BY_OTHER_MESSAGE


class ClaimRefused(Exception):
    def __init__(self, reason: Unclaimable, item: Mapping[str, Any] | None):
        super().__init__(reason.value)
        self.reason = reason
        self.item = item


class ClaimLost(Exception):
    """The claim is no longer ours (its lease expired and another worker took the step)."""


def _state_by(step_item: Mapping[str, Any], claim: Claim) -> str | None:
    """The state of ``claim``'s segment (or step) in ``step_item`` while this claim's worker and attempt are on it
    (``running``: still held, the condition of ``_update_claimed``, read; ``done``: it finished it); else None."""
    sub = step_item if claim.segment is None else (step_item.get("segments") or {}).get(segment_key(claim.segment)) or {}
    return sub.get("state") if (sub.get("worker_id"), sub.get("attempts")) == (claim.worker_id, claim.attempt) else None


def _lost(claim: Claim) -> ClaimLost:
    what = claim.step if claim.segment is None else f"{claim.step} segment {claim.segment}"
    return ClaimLost(f"{claim.job_id}/{what} attempt {claim.attempt} is no longer held by {claim.worker_id}")


_STEP = "steps.#step"


def _waits_on_message(path: str) -> str:
    """The condition that the step or segment at ``path`` waits on the message ``:message`` (at time ``:now``):
    running, held through it or under an expired lease; or pending, held by no message or handed back by it."""
    return (
        f"(({path}.#state = :running AND ({path}.message_id = :message OR {path}.lease_expires_at < :now)) OR "
        f"({path}.#state = :pending AND (attribute_not_exists({path}.message_id) OR {path}.message_id = :message)))"
    )


# The error recorded when a claim takes over an expired lease (a failure against the retry budget).
UNANSWERED = "the worker running the attempt before stopped answering (killed, or hung past its lease)"


class JobStore:
    """Conditional reads and writes of job items in one DynamoDB table."""

    def __init__(self, table: Any):
        self.table = table

    # --- creation and reads -------------------------------------------------

    def create_job(self, obj: ObjectRef, step_names: list[str], now: float) -> bool:
        """Put a new job unless one exists for the same object version. True when created."""
        try:
            self.table.put_item(
                Item=to_dynamo(new_job_item(obj, step_names, now)),
                ConditionExpression="attribute_not_exists(job_id)",
            )
        except ClientError as error:
            if is_conditional_failure(error):
                return False
            raise
        return True

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        item = self.table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
        return from_dynamo(item) if item is not None else None

    def set_status(self, job_id: str, status: JobStatus, now: float) -> bool:
        """Move a job to a final status unless it already has one. True when this call changed it."""
        return self._update_if(
            Key={"job_id": job_id},
            UpdateExpression="SET #status = :status, updated_at = :now",
            ConditionExpression="attribute_exists(job_id) AND NOT #status IN (:succeeded, :failed)",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=to_dynamo(
                {":status": status.value, ":now": now, ":succeeded": JobStatus.SUCCEEDED.value, ":failed": JobStatus.FAILED.value}
            ),
        )

    # --- the claim's life -----------------------------------------------------

    def claim(
        self, job_id: str, step: str, worker_id: str, message_id: str, now: float, lease_seconds: float, segment: int | None = None
    ) -> Claim:
        """pending -> running (or running under an expired lease -> running), for this worker.

        With ``segment``, the same transition on that segment's sub-item of a split step (which stays running).
        Taking over an expired lease counts a failure against the retry budget: the attempt before ended with
        no answer (its worker was killed, or hung past its lease), and redeliveries that the lifecycle
        postpones as fresh copies would otherwise hide such a loop from the DLQ's receive count.
        Raises ClaimRefused with the reason when the step (or segment) cannot be claimed.
        """
        path, names = _path(step, segment)
        # A segment is claimed only while its step runs; a split step itself is never claimed whole again
        # (its step message, or a retry's, resumes the segments: Unclaimable.SPLIT).
        parent_running = f" AND attribute_not_exists({_STEP}.segment_count)" if segment is None else f" AND {_STEP}.#state = :running"
        values = {
            ":running": StepState.RUNNING.value,
            ":one": 1,
            ":zero": 0,
            ":worker": worker_id,
            ":message": message_id,
            ":lease": now + lease_seconds,
            ":now": now,
            ":job_pending": JobStatus.PENDING.value,
            ":job_running": JobStatus.RUNNING.value,
        }
        claimed = (
            f"SET {path}.#state = :running, {path}.attempts = {path}.attempts + :one, "
            f"{path}.worker_id = :worker, {path}.message_id = :message, "
            f"{path}.lease_expires_at = :lease, {path}.started_at = :now, "
            "#status = :job_running, updated_at = :now, "
        )
        ways = [
            (
                f"{path}.#state = :pending",
                f"{path}.failures = if_not_exists({path}.failures, :zero)",
                {":pending": StepState.PENDING.value},
                {},
            ),
            (
                f"{path}.#state = :running AND {path}.lease_expires_at < :now",
                f"{path}.failures = if_not_exists({path}.failures, :zero) + :one, {path}.#error = :unanswered",
                {":unanswered": UNANSWERED},
                {"#error": "error"},
            ),
        ]
        item = self._first_applied(
            {
                "Key": {"job_id": job_id},
                "UpdateExpression": claimed + failures,
                "ConditionExpression": f"attribute_exists({path}) AND #status IN (:job_pending, :job_running){parent_running} AND {state}",
                "ExpressionAttributeNames": {**names, "#state": "state", "#status": "status", **extra_names},
                "ExpressionAttributeValues": to_dynamo(values | extra),
            }
            for state, failures, extra, extra_names in ways
        )
        if item is None:
            refused = self.get_job(job_id)
            raise ClaimRefused(classify_unclaimable(refused, step, message_id, segment), refused)
        claimed_item = item["steps"][step] if segment is None else item["steps"][step]["segments"][segment_key(segment)]
        span = None if segment is None else Segment.from_item(segment, int(item["steps"][step]["segment_count"]), claimed_item)
        return Claim(
            job_id=job_id,
            step=step,
            worker_id=worker_id,
            attempt=int(claimed_item["attempts"]),
            step_names=tuple(item["step_names"]),
            failures=int(claimed_item.get("failures", 0)),
            segment=segment,
            span=span,
            message_id=message_id,
            retried_at=item["steps"][step].get("retried_at"),
        )

    # --- split steps: plan, fan-in, merge -------------------------------------------------------

    def record_split(self, claim: Claim, segments: list[Segment], segment_seconds: float, now: float) -> None:
        """Record the segments of the claimed step, each pending; the step stays running with no holder.

        Its lease and worker go, so the step's own message is settled (``Unclaimable.SPLIT``) and only the
        segments' messages, then the merge, move it on.
        """
        planned = {segment_key(s.index): {**s.to_item(), "state": StepState.PENDING.value, "attempts": 0, "failures": 0} for s in segments}
        self._update_claimed(
            claim,
            f"SET {_STEP}.#segments = :segments, {_STEP}.segment_count = :count, {_STEP}.segments_done = :zero, "
            f"{_STEP}.segment_seconds = :seconds, updated_at = :now REMOVE {_STEP}.lease_expires_at, {_STEP}.worker_id",
            {":segments": planned, ":count": len(segments), ":zero": 0, ":seconds": segment_seconds, ":now": now},
            names={"#segments": "segments"},  # a DynamoDB reserved word
        )

    def resume_split(self, job_id: str, step: str, now: float, message_id: str) -> bool:
        """A split step put back to pending (by ``gpupipe retry``) runs again: pending -> running with no holder,
        so its segments can be claimed; the resuming message is recorded as the step's (it sends the segments'
        messages, and with every segment done it is the one that merges). True when this call moved it."""
        return self._update_if(
            Key={"job_id": job_id},
            UpdateExpression=f"SET {_STEP}.#state = :running, {_STEP}.message_id = :message, updated_at = :now",
            ConditionExpression=(
                f"attribute_exists({_STEP}.segment_count) AND {_STEP}.#state = :pending AND #status IN (:job_pending, :job_running)"
            ),
            ExpressionAttributeNames={"#step": step, "#state": "state", "#status": "status"},
            ExpressionAttributeValues=to_dynamo(
                {
                    ":running": StepState.RUNNING.value,
                    ":pending": StepState.PENDING.value,
                    ":job_pending": JobStatus.PENDING.value,
                    ":job_running": JobStatus.RUNNING.value,
                    ":now": now,
                    ":message": message_id,
                }
            ),
        )

    def record_segment_message(self, job_id: str, step: str, segment: int, message_id: str, retried_at: float | None) -> bool:
        """The message just sent for a pending segment carries it: record its id, unless a message was recorded
        or a claim came first (it records the same id). True when this call recorded it.

        So a segment sent but not yet claimed is not taken for one never sent (``segments.unclaimed``): the
        step's message, when it comes back or is dead-lettered, knows the segment has a message of its own.
        Only while the step was not retried since the sender read it (``retried_at`` as it found it): a record
        landing after ``gpupipe retry`` (which drops every unfinished segment's message) could name a message
        that is gone.
        """
        path, names = _path(step, segment)
        retry = f"{_STEP}.retried_at = :retried_at" if retried_at is not None else f"attribute_not_exists({_STEP}.retried_at)"
        return self._update_if(
            Key={"job_id": job_id},
            UpdateExpression=f"SET {path}.message_id = :message",
            ConditionExpression=f"{retry} AND {path}.#state = :pending AND attribute_not_exists({path}.message_id)",
            ExpressionAttributeNames={**names, "#state": "state"},
            ExpressionAttributeValues=to_dynamo(
                {":message": message_id, ":pending": StepState.PENDING.value}
                | ({":retried_at": retried_at} if retried_at is not None else {})
            ),
        )

    def mark_segment_done(self, claim: Claim, now: float, result_file: str, timings: Mapping[str, float]) -> tuple[int, int]:
        """A segment running -> done, counted on the step in the same conditional update: (done, planned) after it.

        Each segment is counted once (only its holder can move it from running), so exactly one worker
        sees ``done == planned``: the one that merges. That same update records its message as the step's (the
        one that merges next), so a dead letter of the step's own message, or of this one, knows who carries
        the merge (``segments.needs_step_message``). Whether this count is the last is known only against the
        count it changes, so the update is a compare-and-set on ``segments_done``: first as if this segment
        were the last, then, refused, against the count read again (segments finishing together each retry).
        """
        if claim.segment is None or claim.span is None:
            raise ValueError("mark_segment_done needs a segment claim")
        path, _ = claim.path
        count = claim.span.count
        values = {":done": StepState.DONE.value, ":now": now, ":result": result_file, ":timings": dict(timings), ":one": 1}
        seen = count - 1
        for _ in range(count + 1):  # the count only grows, so each refusal is another segment's progress
            last = seen + 1 == count
            item = self._first_applied(
                [
                    self._claimed_request(
                        claim,
                        f"SET {path}.#state = :done, {path}.finished_at = :now, {path}.result_file = :result, "
                        f"{path}.timings = :timings, {_STEP}.segments_done = {_STEP}.segments_done + :one, updated_at = :now"
                        f"{f', {_STEP}.message_id = :message' if last else ''} REMOVE {path}.lease_expires_at",
                        values | {":seen": seen} | ({":message": claim.message_id} if last else {}),
                        also=f" AND {_STEP}.segments_done = :seen",
                    )
                ]
            )
            if item is not None:
                step = item["steps"][claim.step]
                return int(step["segments_done"]), int(step["segment_count"])
            step = ((self.get_job(claim.job_id) or {}).get("steps") or {}).get(claim.step) or {}
            state = _state_by(step, claim)
            if state == StepState.DONE:  # this very update was applied and its answer lost (the SDK's retry was refused)
                planned = int(step["segment_count"])
                done = planned if step.get("message_id") == claim.message_id else min(int(step["segments_done"]), planned - 1)
                return done, planned  # it completed the set exactly when it recorded its message as the one that merges
            if state != StepState.RUNNING:
                raise _lost(claim)
            seen = int(step.get("segments_done") or 0)
        raise _lost(claim)

    def claim_merge(self, job_id: str, step: str, worker_id: str, message_id: str, now: float, lease_seconds: float) -> Claim:
        """Take a split step whose segments are all done, to merge them: a new attempt of the step, with a lease.

        A merge that crashed leaves its lease to expire; the next message of the step's segments claims it again,
        counting a failure against the step's retry budget as ``claim`` does for a takeover.
        """
        ways = [
            (f"attribute_not_exists({_STEP}.lease_expires_at)", "", {}, {}),
            (
                f"{_STEP}.lease_expires_at < :now",
                f", {_STEP}.failures = if_not_exists({_STEP}.failures, :zero) + :one, {_STEP}.#error = :unanswered",
                {":zero": 0, ":unanswered": UNANSWERED},
                {"#error": "error"},
            ),
        ]
        claimed = self._first_applied(
            {
                "Key": {"job_id": job_id},
                "UpdateExpression": (
                    f"SET {_STEP}.attempts = {_STEP}.attempts + :one, {_STEP}.worker_id = :worker, "
                    f"{_STEP}.message_id = :message, {_STEP}.lease_expires_at = :lease, {_STEP}.merge_started_at = :now, "
                    f"updated_at = :now{failures}"
                ),
                "ConditionExpression": (
                    f"#status = :job_running AND {_STEP}.#state = :running AND {_STEP}.segments_done = {_STEP}.segment_count AND {lease}"
                ),
                "ExpressionAttributeNames": {"#step": step, "#state": "state", "#status": "status", **extra_names},
                "ExpressionAttributeValues": to_dynamo(
                    {
                        ":one": 1,
                        ":worker": worker_id,
                        ":message": message_id,
                        ":lease": now + lease_seconds,
                        ":now": now,
                        ":running": StepState.RUNNING.value,
                        ":job_running": JobStatus.RUNNING.value,
                    }
                    | extra
                ),
            }
            for lease, failures, extra, extra_names in ways
        )
        if claimed is None:
            item = self.get_job(job_id)
            reason = classify_unclaimable(item, step, message_id)
            step_item = ((item or {}).get("steps") or {}).get(step) or {}
            if reason not in (Unclaimable.FINISHED, Unclaimable.NO_JOB, Unclaimable.NO_STEP) and int(
                step_item.get("segments_done") or 0
            ) < int(step_item.get("segment_count") or 0):
                reason = Unclaimable.SEGMENTS_LEFT
            raise ClaimRefused(reason, item)
        item = claimed
        return Claim(
            job_id=job_id,
            step=step,
            worker_id=worker_id,
            attempt=int(item["steps"][step]["attempts"]),
            step_names=tuple(item["step_names"]),
            failures=int(item["steps"][step].get("failures", 0)),
            merging=True,
            message_id=message_id,
        )

    def extend_lease(self, claim: Claim, until: float) -> None:
        path, _ = claim.path
        self._update_claimed(claim, f"SET {path}.lease_expires_at = :lease", {":lease": until})

    def mark_done(self, claim: Claim, now: float, result_file: str, timings: Mapping[str, float]) -> None:
        """running -> done; the job succeeds with its last step. (A segment is done with ``mark_segment_done``.)"""
        if claim.segment is not None:
            raise ValueError("a segment is done with mark_segment_done")
        job_status = JobStatus.SUCCEEDED if claim.is_last_step else JobStatus.RUNNING
        self._update_claimed(
            claim,
            f"SET {_STEP}.#state = :done, {_STEP}.finished_at = :now, {_STEP}.result_file = :result, "
            f"{_STEP}.timings = :timings, #status = :job_status, updated_at = :now REMOVE {_STEP}.lease_expires_at",
            {
                ":done": StepState.DONE.value,
                ":now": now,
                ":result": result_file,
                ":timings": dict(timings),
                ":job_status": job_status.value,
            },
            names={"#status": "status"},
        )

    def mark_failed(self, claim: Claim, now: float, reason: str) -> None:
        """running -> failed, and the job fails with it. A segment's failure fails its step (and the job) with it."""
        path, _ = claim.path
        segment = "" if claim.segment is None else f", {path}.#state = :failed, {path}.finished_at = :now, {path}.#error = :reason"
        also_remove = "" if claim.segment is None else f", {path}.lease_expires_at"
        self._update_claimed(
            claim,
            f"SET {_STEP}.#state = :failed, {_STEP}.finished_at = :now, {_STEP}.#error = :reason{segment}, "
            f"#status = :job_failed, updated_at = :now REMOVE {_STEP}.lease_expires_at{also_remove}",
            {":failed": StepState.FAILED.value, ":now": now, ":reason": reason, ":job_failed": JobStatus.FAILED.value},
            names={"#status": "status", "#error": "error"},
        )

    def release_after_error(self, claim: Claim, now: float, reason: str) -> None:
        """running -> pending after a transient error, counted against the retry budget.

        Pending, not running under a shortened lease: a heartbeat that lands after this
        write finds the claim gone, so it cannot hold back the retry. A merge's step stays
        running (its segments are done) with no holder, for the next merge.
        """
        path, _ = claim.path
        state = StepState.RUNNING if claim.merging else StepState.PENDING
        self._update_claimed(
            claim,
            f"SET {path}.#state = :state, {path}.#error = :reason, {path}.failures = :failures, updated_at = :now "
            f"REMOVE {path}.lease_expires_at, {path}.worker_id",
            {":state": state.value, ":reason": reason, ":failures": claim.failures + 1, ":now": now},
            names={"#error": "error"},
        )

    def release(self, claim: Claim, now: float) -> None:
        """running -> pending with no failure counted (the hand-back on shutdown); a merge's step stays running."""
        path, _ = claim.path
        state = StepState.RUNNING if claim.merging else StepState.PENDING
        self._update_claimed(
            claim,
            f"SET {path}.#state = :state, updated_at = :now REMOVE {path}.lease_expires_at, {path}.worker_id",
            {":state": state.value, ":now": now},
        )

    def _first_applied(self, requests: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
        """Try conditional ``update_item`` requests in turn; the item as the first applied left it, or None."""
        for request in requests:
            try:
                item: dict[str, Any] = from_dynamo(self.table.update_item(**request, ReturnValues="ALL_NEW")["Attributes"])
                return item
            except ClientError as error:
                if not is_conditional_failure(error):
                    raise
        return None

    def _update_if(self, **request: Any) -> bool:
        """One conditional ``update_item``: True when it was applied, False when its condition did not hold."""
        try:
            self.table.update_item(**request)
        except ClientError as error:
            if is_conditional_failure(error):
                return False
            raise
        return True

    def _update_claimed(
        self,
        claim: Claim,
        update: str,
        values: Mapping[str, Any],
        names: Mapping[str, str] | None = None,
        returns: bool = False,
    ) -> dict[str, Any]:
        """One conditional update, applied only while ``claim`` (its sub-item, worker and attempt) is held."""
        try:
            response = self.table.update_item(
                **self._claimed_request(claim, update, values, names), **({"ReturnValues": "ALL_NEW"} if returns else {})
            )
        except ClientError as error:
            if is_conditional_failure(error):
                raise _lost(claim) from None
            raise
        item: dict[str, Any] = from_dynamo(response.get("Attributes") or {})
        return item

    @staticmethod
    def _claimed_request(
        claim: Claim, update: str, values: Mapping[str, Any], names: Mapping[str, str] | None = None, also: str = ""
    ) -> dict[str, Any]:
        """The ``update_item`` request of ``_update_claimed``: its condition is that ``claim`` is held (and ``also``)."""
        path, path_names = claim.path
        return {
            "Key": {"job_id": claim.job_id},
            "UpdateExpression": update,
            "ConditionExpression": (
                f"{path}.#state = :claimed_state AND {path}.worker_id = :claimed_by AND {path}.attempts = :claimed_attempt{also}"
            ),
            "ExpressionAttributeNames": {**path_names, "#state": "state", **(names or {})},
            "ExpressionAttributeValues": to_dynamo(
                {**values, ":claimed_state": StepState.RUNNING.value, ":claimed_by": claim.worker_id, ":claimed_attempt": claim.attempt}
            ),
        }

    # --- dead letters, retries and announcements ------------------------------------------
    # Writes made outside a claim: by the dead-letter consumer, `gpupipe retry` and the router.

    def fail_dead_lettered(self, job_id: str, step: str, reason: str, now: float, message_id: str) -> bool:
        """Fail a step whose message SQS moved to the dead-letter queue, and its job with it. True when this call failed it.

        Only the message the step waits on can fail it: a running step held through this
        message (``message_id``; SQS keeps a message's id when it dead-letters it) or whose
        holder's lease has run out, or a pending step that no message holds (never claimed,
        or put back by a retry) or that was handed back by this message. A done or failed
        step, or one a live holder with another message works on, is left alone (returns False).
        """
        return self._update_if(
            Key={"job_id": job_id},
            UpdateExpression=(
                f"SET {_STEP}.#state = :failed, {_STEP}.finished_at = :now, {_STEP}.#error = :reason, "
                f"#status = :job_failed, updated_at = :now REMOVE {_STEP}.lease_expires_at"
            ),
            ConditionExpression=f"attribute_exists({_STEP}) AND {_waits_on_message(_STEP)}",
            ExpressionAttributeNames={"#step": step, "#state": "state", "#status": "status", "#error": "error"},
            ExpressionAttributeValues=to_dynamo(
                {
                    ":failed": StepState.FAILED.value,
                    ":running": StepState.RUNNING.value,
                    ":pending": StepState.PENDING.value,
                    ":job_failed": JobStatus.FAILED.value,
                    ":reason": reason,
                    ":message": message_id,
                    ":now": now,
                }
            ),
        )

    def fail_dead_lettered_segment(self, job_id: str, step: str, segment: Segment, reason: str, now: float, message_id: str) -> bool:
        """Fail a segment whose message SQS dead-lettered, its step and its job, the step's error naming the segment.

        The same rule as ``fail_dead_lettered`` (``_waits_on_message``), on the segment's sub-item: only the
        message the segment waits on can fail it, and only while its step runs. A done segment, a finished step, or a segment a
        live holder with another message works on is left alone (False). The step is never marked done.
        """
        seg = f"{_STEP}.#segments.#seg"
        return self._update_if(
            Key={"job_id": job_id},
            UpdateExpression=(
                f"SET {seg}.#state = :failed, {seg}.finished_at = :now, {seg}.#error = :reason, "
                f"{_STEP}.#state = :failed, {_STEP}.finished_at = :now, {_STEP}.#error = :step_reason, "
                f"#status = :job_failed, updated_at = :now REMOVE {seg}.lease_expires_at, {_STEP}.lease_expires_at"
            ),
            ConditionExpression=f"{_STEP}.#state = :running AND attribute_exists({seg}) AND {_waits_on_message(seg)}",
            ExpressionAttributeNames={
                "#step": step,
                "#segments": "segments",
                "#seg": segment_key(segment.index),
                "#state": "state",
                "#status": "status",
                "#error": "error",
            },
            ExpressionAttributeValues=to_dynamo(
                {
                    ":failed": StepState.FAILED.value,
                    ":running": StepState.RUNNING.value,
                    ":pending": StepState.PENDING.value,
                    ":job_failed": JobStatus.FAILED.value,
                    ":reason": reason,
                    ":step_reason": f"{segment.label}: {reason}",
                    ":message": message_id,
                    ":now": now,
                }
            ),
        )

    def retry_failed_step(self, job_id: str, step: str, now: float) -> bool:
        """failed -> pending with a fresh retry budget; the job runs again. True when this call moved it.

        ``attempts`` stays: it only ever grows (it fences claims). The router sees the step
        go failed -> pending on the stream and sends it to the step's queue. A split step keeps its
        segments: those done stay done, every other goes back to pending with a fresh budget and no
        message, so the step's message resumes them (``Unclaimable.SPLIT``) and nothing done is redone.
        The segments are written back as one map (an expression naming each would pass DynamoDB's 4 KB
        expression limit at about 14 segments), on condition that none was done since the read.
        """
        for _ in range(3):  # a segment still held when its step failed may finish meanwhile: read again
            job = self.get_job(job_id)
            status = ((job or {}).get("steps") or {}).get(step) or {}
            if status.get("state") != StepState.FAILED:
                return False
            names = {"#step": step, "#state": "state", "#status": "status", "#error": "error"}
            values: dict[str, Any] = {
                ":pending": StepState.PENDING.value,
                ":failed": StepState.FAILED.value,
                ":zero": 0,
                ":job_running": JobStatus.RUNNING.value,
                ":now": now,
            }
            split = ""
            condition = f"attribute_exists({_STEP}) AND {_STEP}.#state = :failed AND attribute_not_exists({_STEP}.segment_count)"
            if status.get("segment_count"):
                names["#segments"] = "segments"
                values |= {
                    ":segments": _segments_for_retry(status.get("segments") or {}),
                    ":count": int(status["segment_count"]),
                    ":done": int(status.get("segments_done") or 0),
                }
                split = f"{_STEP}.#segments = :segments, "
                condition = (
                    f"attribute_exists({_STEP}) AND {_STEP}.#state = :failed AND {_STEP}.segment_count = :count "
                    f"AND {_STEP}.segments_done = :done"
                )
            if self._update_if(
                Key={"job_id": job_id},
                UpdateExpression=(
                    f"SET {_STEP}.#state = :pending, {_STEP}.failures = :zero, {_STEP}.retried_at = :now, {split}"
                    "#status = :job_running, updated_at = :now "
                    f"REMOVE {_STEP}.#error, {_STEP}.finished_at, {_STEP}.worker_id, {_STEP}.lease_expires_at, {_STEP}.message_id"
                ),
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_dynamo(values),
            ):
                return True
        return False

    def claim_announcement(self, job_id: str, finished_at: float) -> bool:
        """Claim the right to announce the job's end recorded at ``finished_at`` (the item's ``updated_at``
        in the stream image that finished it). True once per end: a replayed record, or an older end
        replayed after a newer one, gets False; a job that is retried and ends again gets True again.
        """
        return self._update_if(
            Key={"job_id": job_id},
            UpdateExpression="SET announced_at = :at",
            ConditionExpression="attribute_exists(job_id) AND (attribute_not_exists(announced_at) OR announced_at < :at)",
            ExpressionAttributeValues=to_dynamo({":at": finished_at}),
        )

    def release_announcement(self, job_id: str, finished_at: float) -> None:
        """Give back a claim whose announcement could not be sent, so the record's retry sends it."""
        try:
            self.table.update_item(
                Key={"job_id": job_id},
                UpdateExpression="REMOVE announced_at",
                ConditionExpression="announced_at = :at",
                ExpressionAttributeValues=to_dynamo({":at": finished_at}),
            )
        except ClientError as error:
            if not is_conditional_failure(error):
                raise


_UNDONE_ON_RETRY = ("error", "finished_at", "worker_id", "lease_expires_at", "message_id")


def _segments_for_retry(segments: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """A split step's segments as ``gpupipe retry`` leaves them: done ones as they are, every other pending
    with a fresh budget and no holder or message (its plan and its ``attempts``, the fencing token, kept)."""
    fresh = {"state": StepState.PENDING.value, "failures": 0}
    return {
        key: dict(sub) if sub.get("state") == StepState.DONE else {k: v for k, v in sub.items() if k not in _UNDONE_ON_RETRY} | fresh
        for key, sub in segments.items()
    }
