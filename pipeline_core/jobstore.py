"""DynamoDB I/O for job items: every state change is one conditional update.

The conditions encode ``jobs.STEP_TRANSITIONS``: a step is claimed only while
pending (or running under an expired lease), and only the worker holding the
claim, for the attempt it claimed, can extend, finish, fail or release it.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    """A worker's hold on one step of one job, for one attempt."""

    job_id: str
    step: str
    worker_id: str
    attempt: int  # the fencing token: every claim of a step gets a new, higher number
    step_names: tuple[str, ...]
    failures: int = 0  # transient failures counted against the step's retry budget before this attempt

    @property
    def is_last_step(self) -> bool:
        return self.step_names[-1] == self.step


class Unclaimable(StrEnum):
    """Why a step could not be claimed, and so what to do with its message."""

    NO_JOB = "no-job"  # the message names a job that does not exist: drop it
    NO_STEP = "no-step"  # the job has no such step: drop it
    FINISHED = "finished"  # step done or failed, or job over: a redelivery, drop it
    HELD_BY_OTHER_MESSAGE = "held-by-other-message"  # a duplicate message: the holder has its own, drop this one
    HELD_BY_THIS_MESSAGE = "held-by-this-message"  # SQS redelivered the message the holder works on: keep it, retry after the lease


def classify_unclaimable(item: Mapping[str, Any] | None, step: str, message_id: str) -> Unclaimable:
    """Why ``step`` of ``item`` could not be claimed by the message ``message_id``."""
    if item is None:
        return Unclaimable.NO_JOB
    status = item.get("steps", {}).get(step)
    if status is None:
        return Unclaimable.NO_STEP
    if status.get("state") in (StepState.DONE, StepState.FAILED) or item.get("status") in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        return Unclaimable.FINISHED
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


_STEP = "steps.#step"


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
        try:
            self.table.update_item(
                Key={"job_id": job_id},
                UpdateExpression="SET #status = :status, updated_at = :now",
                ConditionExpression="attribute_exists(job_id) AND NOT #status IN (:succeeded, :failed)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_dynamo(
                    {":status": status.value, ":now": now, ":succeeded": JobStatus.SUCCEEDED.value, ":failed": JobStatus.FAILED.value}
                ),
            )
        except ClientError as error:
            if is_conditional_failure(error):
                return False
            raise
        return True

    # --- the claim's life -----------------------------------------------------

    def claim(self, job_id: str, step: str, worker_id: str, message_id: str, now: float, lease_seconds: float) -> Claim:
        """pending -> running (or running under an expired lease -> running), for this worker.

        Raises ClaimRefused with the reason when the step cannot be claimed.
        """
        try:
            response = self.table.update_item(
                Key={"job_id": job_id},
                UpdateExpression=(
                    f"SET {_STEP}.#state = :running, {_STEP}.attempts = {_STEP}.attempts + :one, "
                    f"{_STEP}.worker_id = :worker, {_STEP}.message_id = :message, "
                    f"{_STEP}.lease_expires_at = :lease, {_STEP}.started_at = :now, "
                    f"{_STEP}.failures = if_not_exists({_STEP}.failures, :zero), "
                    "#status = :job_running, updated_at = :now"
                ),
                ConditionExpression=(
                    f"attribute_exists({_STEP}) AND #status IN (:job_pending, :job_running) AND "
                    f"({_STEP}.#state = :pending OR ({_STEP}.#state = :running AND {_STEP}.lease_expires_at < :now))"
                ),
                ExpressionAttributeNames={"#step": step, "#state": "state", "#status": "status"},
                ExpressionAttributeValues=to_dynamo(
                    {
                        ":running": StepState.RUNNING.value,
                        ":pending": StepState.PENDING.value,
                        ":one": 1,
                        ":zero": 0,
                        ":worker": worker_id,
                        ":message": message_id,
                        ":lease": now + lease_seconds,
                        ":now": now,
                        ":job_pending": JobStatus.PENDING.value,
                        ":job_running": JobStatus.RUNNING.value,
                    }
                ),
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if not is_conditional_failure(error):
                raise
            item = self.get_job(job_id)
            raise ClaimRefused(classify_unclaimable(item, step, message_id), item) from None
        item = from_dynamo(response["Attributes"])
        return Claim(
            job_id=job_id,
            step=step,
            worker_id=worker_id,
            attempt=int(item["steps"][step]["attempts"]),
            step_names=tuple(item["step_names"]),
            failures=int(item["steps"][step].get("failures", 0)),
        )

    def extend_lease(self, claim: Claim, until: float) -> None:
        self._update_claimed(claim, f"SET {_STEP}.lease_expires_at = :lease", {":lease": until})

    def mark_done(self, claim: Claim, now: float, result_file: str, timings: Mapping[str, float]) -> None:
        """running -> done; the job succeeds with its last step."""
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
        """running -> failed, and the job fails with it."""
        self._update_claimed(
            claim,
            f"SET {_STEP}.#state = :failed, {_STEP}.finished_at = :now, {_STEP}.#error = :reason, "
            f"#status = :job_failed, updated_at = :now REMOVE {_STEP}.lease_expires_at",
            {":failed": StepState.FAILED.value, ":now": now, ":reason": reason, ":job_failed": JobStatus.FAILED.value},
            names={"#status": "status", "#error": "error"},
        )

    def release_after_error(self, claim: Claim, now: float, reason: str) -> None:
        """running -> pending after a transient error, counted against the retry budget.

        Pending, not running under a shortened lease: a heartbeat that lands after this
        write finds the claim gone, so it cannot hold back the retry.
        """
        self._update_claimed(
            claim,
            f"SET {_STEP}.#state = :pending, {_STEP}.#error = :reason, {_STEP}.failures = :failures, updated_at = :now "
            f"REMOVE {_STEP}.lease_expires_at, {_STEP}.worker_id",
            {":pending": StepState.PENDING.value, ":reason": reason, ":failures": claim.failures + 1, ":now": now},
            names={"#error": "error"},
        )

    def release(self, claim: Claim, now: float) -> None:
        """running -> pending with no failure counted (the hand-back on shutdown)."""
        self._update_claimed(
            claim,
            f"SET {_STEP}.#state = :pending, updated_at = :now REMOVE {_STEP}.lease_expires_at, {_STEP}.worker_id",
            {":pending": StepState.PENDING.value, ":now": now},
        )

    def _update_claimed(
        self,
        claim: Claim,
        update: str,
        values: Mapping[str, Any],
        names: Mapping[str, str] | None = None,
    ) -> None:
        try:
            self.table.update_item(
                Key={"job_id": claim.job_id},
                UpdateExpression=update,
                ConditionExpression=(
                    f"{_STEP}.#state = :claimed_state AND {_STEP}.worker_id = :claimed_by AND {_STEP}.attempts = :claimed_attempt"
                ),
                ExpressionAttributeNames={"#step": claim.step, "#state": "state", **(names or {})},
                ExpressionAttributeValues=to_dynamo(
                    {
                        **values,
                        ":claimed_state": StepState.RUNNING.value,
                        ":claimed_by": claim.worker_id,
                        ":claimed_attempt": claim.attempt,
                    }
                ),
            )
        except ClientError as error:
            if is_conditional_failure(error):
                raise ClaimLost(f"{claim.job_id}/{claim.step} attempt {claim.attempt} is no longer held by {claim.worker_id}") from None
            raise

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
        try:
            self.table.update_item(
                Key={"job_id": job_id},
                UpdateExpression=(
                    f"SET {_STEP}.#state = :failed, {_STEP}.finished_at = :now, {_STEP}.#error = :reason, "
                    f"#status = :job_failed, updated_at = :now REMOVE {_STEP}.lease_expires_at"
                ),
                ConditionExpression=(
                    f"attribute_exists({_STEP}) AND "
                    f"(({_STEP}.#state = :running AND ({_STEP}.message_id = :message OR {_STEP}.lease_expires_at < :now)) OR "
                    f"({_STEP}.#state = :pending AND (attribute_not_exists({_STEP}.message_id) OR {_STEP}.message_id = :message)))"
                ),
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
        except ClientError as error:
            if is_conditional_failure(error):
                return False
            raise
        return True

    def retry_failed_step(self, job_id: str, step: str, now: float) -> bool:
        """failed -> pending with a fresh retry budget; the job runs again. True when this call moved it.

        ``attempts`` stays: it only ever grows (it fences claims). The router sees the step
        go failed -> pending on the stream and sends it to the step's queue.
        """
        try:
            self.table.update_item(
                Key={"job_id": job_id},
                UpdateExpression=(
                    f"SET {_STEP}.#state = :pending, {_STEP}.failures = :zero, {_STEP}.retried_at = :now, "
                    "#status = :job_running, updated_at = :now "
                    f"REMOVE {_STEP}.#error, {_STEP}.finished_at, {_STEP}.worker_id, {_STEP}.lease_expires_at, {_STEP}.message_id"
                ),
                ConditionExpression=f"attribute_exists({_STEP}) AND {_STEP}.#state = :failed",
                ExpressionAttributeNames={"#step": step, "#state": "state", "#status": "status", "#error": "error"},
                ExpressionAttributeValues=to_dynamo(
                    {
                        ":pending": StepState.PENDING.value,
                        ":failed": StepState.FAILED.value,
                        ":zero": 0,
                        ":job_running": JobStatus.RUNNING.value,
                        ":now": now,
                    }
                ),
            )
        except ClientError as error:
            if is_conditional_failure(error):
                return False
            raise
        return True

    def claim_announcement(self, job_id: str, finished_at: float) -> bool:
        """Claim the right to announce the job's end recorded at ``finished_at`` (the item's ``updated_at``
        in the stream image that finished it). True once per end: a replayed record, or an older end
        replayed after a newer one, gets False; a job that is retried and ends again gets True again.
        """
        try:
            self.table.update_item(
                Key={"job_id": job_id},
                UpdateExpression="SET announced_at = :at",
                ConditionExpression="attribute_exists(job_id) AND (attribute_not_exists(announced_at) OR announced_at < :at)",
                ExpressionAttributeValues=to_dynamo({":at": finished_at}),
            )
        except ClientError as error:
            if is_conditional_failure(error):
                return False
            raise
        return True

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
