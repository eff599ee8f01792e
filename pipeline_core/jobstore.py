"""DynamoDB I/O for job items and segment items: every state change is one conditional write.

A job item holds its steps (state, holder, lease, attempts, failures, result) and, for a split step, a
bounded record of the split: the plan's parameters, ``segment_count``, ``segments_done`` and the merge's
holder. Each segment of a split step is an item of its own in the same table (``segments.segment_item_id``),
so neither the job item nor a segment's writes grow with the segment count. The two writes that must move
together (a segment done and counted; a segment failed and its step with it) are one ``TransactWriteItems``.

Every condition is built from the named guards of ``protocol`` (``guard``), which its transition table
(``protocol.TRANSITIONS``) cites: a step is claimed only while pending (or running under an expired lease),
and only the worker holding the claim, for the attempt it claimed, can extend, finish, fail or release it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from pipeline_core.jobs import (
    JobStatus,
    ObjectRef,
    StepState,
    new_job_item,
)
from pipeline_core.protocol import OnRetry, SegmentRecord, StepRecord, Unclaimable, classify_unclaimable, guard, on_retry
from pipeline_core.segments import Segment, SegmentPlan, segment_item_id

__all__ = ["Claim", "ClaimLost", "ClaimRefused", "JobStore", "Unclaimable", "refusal"]

BATCH_GET = 100  # keys per BatchGetItem request (DynamoDB's limit)
SEGMENT_KIND = "segment"  # the ``kind`` of a segment item; job items have none (they have ``step_names``)


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


def is_job_item(item: Mapping[str, Any]) -> bool:
    """A job's item, not a segment's (both live in the jobs table)."""
    return "step_names" in item


@dataclass(frozen=True)
class Claim:
    """A worker's hold on one step of one job (or one segment of a split step), for one attempt."""

    job_id: str
    step: str
    worker_id: str
    attempt: int  # the fencing token: every claim of a step (or segment) gets a new, higher number
    step_names: tuple[str, ...]
    failures: int = 0  # transient failures counted against the step's retry budget before this attempt
    segment: int | None = None  # the claim holds this segment of a split step (its own item)
    merging: bool = False  # the claim holds a split step whose segments are all done, to merge them
    span: Segment | None = None  # the claimed segment's range, from the plan the job item records
    message_id: str = ""  # the message (its chain's origin id) the claim was made through
    retried_at: float | None = None  # when `gpupipe retry` last put the claimed step back, as the claim found it

    @property
    def is_last_step(self) -> bool:
        return self.step_names[-1] == self.step

    @property
    def key(self) -> dict[str, str]:
        """The key of the item the claim holds: the job's, or the segment's own."""
        return {"job_id": self.job_id if self.segment is None else segment_item_id(self.job_id, self.step, self.segment)}

    @property
    def path(self) -> tuple[str, dict[str, str]]:
        """The claimed record's path prefix in expressions (``steps.#step.`` or, in a segment item, nothing), and its names."""
        return _path(self.step, self.segment)


def _path(step: str, segment: int | None) -> tuple[str, dict[str, str]]:
    if segment is None:
        return f"{_STEP}.", {"#step": step}
    return "", {}


def refusal(
    job: Mapping[str, Any] | None,
    step: str,
    message_id: str,
    segment: int | None = None,
    segment_item: Mapping[str, Any] | None = None,
    merging: bool = False,
) -> Unclaimable:
    """Why a claim was refused, from the items read after it (``protocol.classify_unclaimable`` on their records)."""
    record = StepRecord.parse(job, step)
    seg = None if segment is None else SegmentRecord.parse(segment, segment_item)
    return classify_unclaimable(record, message_id, seg, has_job=job is not None, merging=merging)


class ClaimRefused(Exception):
    def __init__(self, reason: Unclaimable, item: Mapping[str, Any] | None, segment_item: Mapping[str, Any] | None = None):
        super().__init__(reason.value)
        self.reason = reason
        self.item = item
        self.segment_item = segment_item


class ClaimLost(Exception):
    """The claim is no longer ours (its lease expired and another worker took the step)."""


def _held_by(record: Mapping[str, Any] | None, claim: Claim) -> bool:
    """Whether ``record`` (a step's record or a segment's item) carries this claim's worker and attempt."""
    return (record or {}).get("worker_id") == claim.worker_id and (record or {}).get("attempts") == claim.attempt


def _lost(claim: Claim) -> ClaimLost:
    what = claim.step if claim.segment is None else f"{claim.step} segment {claim.segment}"
    return ClaimLost(f"{claim.job_id}/{what} attempt {claim.attempt} is no longer held by {claim.worker_id}")


_STEP = "steps.#step"


def _waits_on_message(prefix: str) -> str:
    """The condition that the step or segment at ``prefix`` waits on the message ``:message`` (at time ``:now``):
    running, held through it or under an expired lease; or pending, held by no message or handed back by it."""
    return guard("waits_on_message", prefix)


# The error recorded when a claim takes over an expired lease (a failure against the retry budget).
UNANSWERED = "the worker running the attempt before stopped answering (killed, or hung past its lease)"


class TransactionRefused(Exception):
    """A ``TransactWriteItems`` whose conditions did not all hold: ``failed`` names the requests whose did not."""

    def __init__(self, failed: list[int]):
        super().__init__(f"transaction refused by condition(s) of request(s) {failed}")
        self.failed = failed


class JobStore:
    """Conditional reads and writes of job items and segment items in one DynamoDB table."""

    def __init__(self, table: Any):
        self.table = table

    # --- creation and reads -------------------------------------------------

    def create_job(self, obj: ObjectRef, step_names: list[str], now: float) -> bool:
        """Put a new job unless one exists for the same object version. True when created."""
        try:
            self.table.put_item(
                Item=to_dynamo(new_job_item(obj, step_names, now)),
                ConditionExpression=guard("no_item"),
            )
        except ClientError as error:
            if is_conditional_failure(error):
                return False
            raise
        return True

    def create_claimed(self, obj: ObjectRef, step: str, worker_id: str, message_id: str, now: float, lease_seconds: float) -> Claim | None:
        """Create the job of a one-step pipeline with its step already claimed, in one conditional put: ``create_job``
        then ``claim`` (pending -> running, attempt 1) as one write. None, writing nothing, when the job exists (the
        caller then claims it as usual: a redelivery, or a duplicate event).

        The item is the one those two writes leave: a new job passes every guard of the claim (open, whole, pending).
        """
        item = new_job_item(obj, [step], now)
        item["status"] = JobStatus.RUNNING.value
        item["steps"][step] |= {
            "state": StepState.RUNNING.value,
            "attempts": 1,
            "worker_id": worker_id,
            "message_id": message_id,
            "lease_expires_at": now + lease_seconds,
            "started_at": now,
        }
        try:
            self.table.put_item(Item=to_dynamo(item), ConditionExpression=guard("no_item"))
        except ClientError as error:
            if is_conditional_failure(error):
                return None
            raise
        return Claim(job_id=obj.job_id, step=step, worker_id=worker_id, attempt=1, step_names=(step,), message_id=message_id)

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        item = self.table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
        return from_dynamo(item) if item is not None else None

    def get_segment(self, job_id: str, step: str, index: int) -> dict[str, Any] | None:
        """A segment's own item (None while nothing was recorded for it: pending, no message known)."""
        item = self.table.get_item(Key={"job_id": segment_item_id(job_id, step, index)}, ConsistentRead=True).get("Item")
        return from_dynamo(item) if item is not None else None

    def get_segments(self, job_id: str, step: str, count: int) -> dict[int, dict[str, Any]]:
        """The items of segments ``0 .. count-1`` of a split step that exist, by index (consistent reads, batched)."""
        client = self.table.meta.client  # the resource's client: Python values in and out, as the table's
        found: dict[int, dict[str, Any]] = {}
        keys = [{"job_id": segment_item_id(job_id, step, index)} for index in range(count)]
        for start in range(0, len(keys), BATCH_GET):
            request: dict[str, Any] = {self.table.name: {"Keys": keys[start : start + BATCH_GET], "ConsistentRead": True}}
            while request:
                response = client.batch_get_item(RequestItems=request)
                for raw in response.get("Responses", {}).get(self.table.name, []):
                    item = from_dynamo(raw)
                    found[int(item["index"])] = item
                request = response.get("UnprocessedKeys") or {}
        return found

    def set_status(self, job_id: str, status: JobStatus, now: float) -> bool:
        """Move a job to a final status unless it already has one. True when this call changed it."""
        return self._update_if(
            Key={"job_id": job_id},
            UpdateExpression="SET #status = :status, updated_at = :now",
            ConditionExpression=guard("job_unfinished"),
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

        With ``segment``, the same transition on that segment's own item, while its step runs.
        Taking over an expired lease counts a failure against the retry budget: the attempt before ended with
        no answer (its worker was killed, or hung past its lease), and redeliveries that the lifecycle
        postpones as fresh copies would otherwise hide such a loop from the DLQ's receive count.
        Raises ClaimRefused with the reason when the step (or segment) cannot be claimed.
        """
        if segment is not None:
            return self._claim_segment(job_id, step, worker_id, message_id, now, lease_seconds, segment)
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
        p = f"{_STEP}."
        claimed = (
            f"SET {p}#state = :running, {p}attempts = {p}attempts + :one, "
            f"{p}worker_id = :worker, {p}message_id = :message, "
            f"{p}lease_expires_at = :lease, {p}started_at = :now, "
            "#status = :job_running, updated_at = :now, "
        )
        # A split step itself is never claimed whole again (its step message, or a retry's, resumes the segments:
        # Unclaimable.SPLIT).
        item = self._first_applied(
            {
                "Key": {"job_id": job_id},
                "UpdateExpression": claimed + failures,
                "ConditionExpression": f"{guard('step_exists', _STEP + '.')} AND {guard('job_open')} AND {guard('whole', p)} AND {state}",
                "ExpressionAttributeNames": {"#step": step, "#state": "state", "#status": "status", **extra_names},
                "ExpressionAttributeValues": to_dynamo(values | extra),
            }
            for state, failures, extra, extra_names in _claim_ways(p)
        )
        if item is None:
            refused = self.get_job(job_id)
            raise ClaimRefused(refusal(refused, step, message_id), refused)
        claimed_item = item["steps"][step]
        return Claim(
            job_id=job_id,
            step=step,
            worker_id=worker_id,
            attempt=int(claimed_item["attempts"]),
            step_names=tuple(item["step_names"]),
            failures=int(claimed_item.get("failures", 0)),
            message_id=message_id,
            retried_at=claimed_item.get("retried_at"),
        )

    def _claim_segment(
        self, job_id: str, step: str, worker_id: str, message_id: str, now: float, lease_seconds: float, segment: int
    ) -> Claim:
        """A segment's own item pending (or absent: nothing recorded yet) or running under an expired lease -> running.

        Its step must run: read first (a consistent read). A step failed between that read and the claim costs
        at most the segment's work: its count is recorded on a failed step, which ``gpupipe retry`` keeps.
        """
        job = self.get_job(job_id)
        record = StepRecord.parse(job, step)
        plan = SegmentPlan.from_step(job["steps"][step]) if job is not None and record is not None else None
        if (
            job is None
            or record is None
            or plan is None
            or not 0 <= segment < plan.count
            or record.state != StepState.RUNNING
            or record.job_status != JobStatus.RUNNING
        ):
            raise ClaimRefused(refusal(job, step, message_id, segment, self.get_segment(job_id, step, segment)), job)
        values = {
            ":running": StepState.RUNNING.value,
            ":one": 1,
            ":zero": 0,
            ":worker": worker_id,
            ":message": message_id,
            ":lease": now + lease_seconds,
            ":now": now,
            **_segment_identity(job, step, segment),
        }
        claimed = (
            "SET #state = :running, attempts = if_not_exists(attempts, :zero) + :one, "
            "worker_id = :worker, message_id = :message, lease_expires_at = :lease, started_at = :now, "
            f"{_SEGMENT_IDENTITY}, "
        )
        ways = [
            (f"({guard('no_item')} OR {state})" if index == 0 else state, failures, extra, names)
            for index, (state, failures, extra, names) in enumerate(_claim_ways(""))
        ]
        item = self._first_applied(
            {
                "Key": {"job_id": segment_item_id(job_id, step, segment)},
                "UpdateExpression": claimed + failures,
                "ConditionExpression": state,
                "ExpressionAttributeNames": {"#state": "state", **_SEGMENT_IDENTITY_NAMES, **extra_names},
                "ExpressionAttributeValues": to_dynamo(values | extra),
            }
            for state, failures, extra, extra_names in ways
        )
        if item is None:
            raise ClaimRefused(refusal(job, step, message_id, segment, seg := self.get_segment(job_id, step, segment)), job, seg)
        return Claim(
            job_id=job_id,
            step=step,
            worker_id=worker_id,
            attempt=int(item["attempts"]),
            step_names=tuple(job["step_names"]),
            failures=int(item.get("failures", 0)),
            segment=segment,
            span=plan.segments[segment],
            message_id=message_id,
            retried_at=record.retried_at,
        )

    # --- split steps: plan, fan-in, merge -------------------------------------------------------

    def record_split(self, claim: Claim, plan: SegmentPlan, now: float, max_attempts: int = 0) -> None:
        """Record the split of the claimed step: the plan's parameters, ``segment_count`` and ``segments_done`` = 0
        (a bounded amount, whatever the count); the step stays running with no holder. ``max_attempts`` (the
        worker's budget) is recorded as ``claim_merge`` records it, so a merge-carrying message dead-lettered before
        any merge was claimed is known to have budget left (found in review: such a job failed "merge: ..." with its
        budget unspent, its message's receives spent by segment takeovers).

        No segment item is written here: a segment's item is made by the first write that concerns it (its
        message's record, its claim, a dead letter, a retry), and an absent one reads as pending with no message.
        Its lease and worker go, so the step's own message is settled (``Unclaimable.SPLIT``) and only the
        segments' messages, then the merge, move it on.
        """
        budget = f"{_STEP}.max_attempts = :max_attempts, " if max_attempts > 0 else ""
        values = {":plan": plan.to_item(), ":count": plan.count, ":zero": 0, ":seconds": plan.segment_seconds, ":now": now}
        self._update_claimed(
            claim,
            f"SET {_STEP}.#plan = :plan, {_STEP}.segment_count = :count, {_STEP}.segments_done = :zero, {budget}"
            f"{_STEP}.segment_seconds = :seconds, updated_at = :now REMOVE {_STEP}.lease_expires_at, {_STEP}.worker_id",
            values | ({":max_attempts": max_attempts} if max_attempts > 0 else {}),
            names={"#plan": "plan"},
        )

    def resume_split(self, job_id: str, step: str, now: float, message_id: str) -> bool:
        """A split step put back to pending (by ``gpupipe retry``) runs again: pending -> running with no holder,
        so its segments can be claimed; the resuming message is recorded as the step's (it sends the segments'
        messages, and with every segment done it is the one that merges). True when this call moved it."""
        return self._update_if(
            Key={"job_id": job_id},
            UpdateExpression=f"SET {_STEP}.#state = :running, {_STEP}.message_id = :message, {_STEP}.carrier = :message, updated_at = :now",
            ConditionExpression=f"{guard('split_pending', _STEP + '.')} AND {guard('job_open')}",
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

    def record_segment_message(
        self, job_id: str, step: str, segment: int, message_id: str, retried_at: float | None, job: Mapping[str, Any] | None = None
    ) -> bool:
        """The message just sent for a pending segment carries it: record its id on the segment's item, unless a
        message was recorded or a claim came first (it records the same id). True when this call recorded it.

        So a segment sent but not yet claimed is not taken for one never sent (``unclaimed``): the
        step's message, when it comes back or is dead-lettered, knows the segment has a message of its own.
        Only while the step was not retried since the sender read it (``retried_at`` as it found it; `gpupipe retry`
        writes it on every unfinished segment's item as it drops their messages): a record landing after the retry
        could name a message that is gone. ``job`` is the job item as the sender read it (its TTL is the segment's).
        """
        job = job if job is not None else self.get_job(job_id) or {}
        retry = guard("not_retried_since") if retried_at is not None else guard("never_retried")
        return self._update_if(
            Key={"job_id": segment_item_id(job_id, step, segment)},
            UpdateExpression=f"SET message_id = :message, #state = if_not_exists(#state, :pending), {_SEGMENT_IDENTITY}",
            ConditionExpression=(
                f"{guard('no_item')} OR ({retry} AND {guard('message_unrecorded')})"
                if retried_at is None
                else f"{retry} AND {guard('message_unrecorded')}"
            ),
            ExpressionAttributeNames={"#state": "state", **_SEGMENT_IDENTITY_NAMES},
            ExpressionAttributeValues=to_dynamo(
                {":message": message_id, ":pending": StepState.PENDING.value, **_segment_identity(job, step, segment)}
                | ({":retried_at": retried_at} if retried_at is not None else {})
            ),
        )

    def mark_segment_done(self, claim: Claim, now: float, result_file: str, timings: Mapping[str, float]) -> tuple[int, int]:
        """A segment running -> done and counted on its step, in one transaction: (done, planned) read after it.

        The segment item's own conditional transition (only its holder moves it from running) and the step's
        ``segments_done`` + 1 commit together or not at all, so each segment is counted exactly once, and no crash
        between two writes can leave one done but uncounted. The increment is one atomic update of the counter
        (no compare-and-set: segments finishing together cost one write each). The SDK's retries of the
        transaction reuse its idempotency token; an answer lost anyway is recognised on the segment's item (done
        by this claim: the transaction was applied). Whoever then reads ``done == planned`` tries the merge
        (``claim_merge``: one wins); the last to be counted always reads it.
        """
        if claim.segment is None or claim.span is None:
            raise ValueError("mark_segment_done needs a segment claim")
        segment = self._claimed_request(
            claim,
            "SET #state = :done, finished_at = :now, result_file = :result, timings = :timings REMOVE lease_expires_at",
            {":done": StepState.DONE.value, ":now": now, ":result": result_file, ":timings": dict(timings)},
        )
        count = {
            "Key": {"job_id": claim.job_id},
            "UpdateExpression": f"SET {_STEP}.segments_done = {_STEP}.segments_done + :one, updated_at = :now",
            "ConditionExpression": guard("split", _STEP + "."),
            "ExpressionAttributeNames": {"#step": claim.step},
            "ExpressionAttributeValues": to_dynamo({":one": 1, ":now": now}),
        }
        try:
            self._transact([segment, count])
        except TransactionRefused:
            if (seg := self.get_segment(claim.job_id, claim.step, claim.segment)) is None or not (
                _held_by(seg, claim) and seg.get("state") == StepState.DONE
            ):
                raise _lost(claim) from None
            # this very transaction was applied and its answer lost: counted once, by it
        record = StepRecord.parse(self.get_job(claim.job_id), claim.step)
        return (record.segments_done, record.segment_count or claim.span.count) if record else (0, claim.span.count)

    def claim_merge(
        self, job_id: str, step: str, worker_id: str, message_id: str, now: float, lease_seconds: float, max_attempts: int = 0
    ) -> Claim:
        """Take a split step whose segments are all done, to merge them: a new attempt of the step, with a lease.

        A merge that crashed leaves its lease to expire; the next message of the step's segments claims it again,
        counting a failure against the step's retry budget as ``claim`` does for a takeover. ``max_attempts`` (the
        worker's budget) is recorded, so the dead-letter consumer knows whether a dead-lettered merge has budget left.
        """
        ways = [
            (guard("no_live_merge", _STEP + "."), "", {}, {}),
            (
                guard("lease_expired", _STEP + "."),
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
                    f"{_STEP}.message_id = :message, {_STEP}.carrier = :message, {_STEP}.lease_expires_at = :lease, "
                    f"{_STEP}.merge_started_at = :now, {_STEP}.max_attempts = :max_attempts, "
                    f"updated_at = :now{failures}"
                ),
                "ConditionExpression": f"{guard('step_running', _STEP + '.')} AND {guard('every_segment_done', _STEP + '.')} AND {lease}",
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
                        ":max_attempts": max_attempts,
                    }
                    | extra
                ),
            }
            for lease, failures, extra, extra_names in ways
        )
        if claimed is None:
            item = self.get_job(job_id)
            reason = refusal(item, step, message_id, merging=True)
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
        p, _ = claim.path
        self._update_claimed(claim, f"SET {p}lease_expires_at = :lease", {":lease": until})

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
        """running -> failed, and the job fails with it. A segment's failure fails its step (and the job) with it,
        in one transaction with the segment's own transition (the holder's condition)."""
        step_failed = {
            "Key": {"job_id": claim.job_id},
            "UpdateExpression": (
                f"SET {_STEP}.#state = :failed, {_STEP}.finished_at = :now, {_STEP}.#error = :reason, "
                f"#status = :job_failed, updated_at = :now REMOVE {_STEP}.lease_expires_at"
            ),
            "ExpressionAttributeNames": {"#step": claim.step, "#state": "state", "#status": "status", "#error": "error"},
            "ExpressionAttributeValues": to_dynamo(
                {":failed": StepState.FAILED.value, ":now": now, ":reason": reason, ":job_failed": JobStatus.FAILED.value}
            ),
        }
        if claim.segment is None:
            self._update_claimed(
                claim,
                step_failed["UpdateExpression"],
                step_failed["ExpressionAttributeValues"],
                names={"#status": "status", "#error": "error"},
            )
            return
        segment = self._claimed_request(
            claim,
            "SET #state = :failed, finished_at = :now, #error = :reason REMOVE lease_expires_at",
            {":failed": StepState.FAILED.value, ":now": now, ":reason": reason},
            names={"#error": "error"},
        )
        try:
            self._transact([segment, step_failed | {"ConditionExpression": guard("step_exists", _STEP + ".")}])
        except TransactionRefused:
            raise _lost(claim) from None

    def release_after_error(self, claim: Claim, now: float, reason: str) -> None:
        """running -> pending after a transient error, counted against the retry budget.

        Pending, not running under a shortened lease: a heartbeat that lands after this
        write finds the claim gone, so it cannot hold back the retry. A merge's step stays
        running (its segments are done) with no holder, for the next merge.
        """
        p, _ = claim.path
        state = StepState.RUNNING if claim.merging else StepState.PENDING
        self._update_claimed(
            claim,
            f"SET {p}#state = :state, {p}#error = :reason, {p}failures = :failures, updated_at = :now "
            f"REMOVE {p}lease_expires_at, {p}worker_id",
            {":state": state.value, ":reason": reason, ":failures": claim.failures + 1, ":now": now},
            names={"#error": "error"},
        )

    def release(self, claim: Claim, now: float) -> None:
        """running -> pending with no failure counted (the hand-back on shutdown); a merge's step stays running."""
        p, _ = claim.path
        state = StepState.RUNNING if claim.merging else StepState.PENDING
        self._update_claimed(
            claim,
            f"SET {p}#state = :state, updated_at = :now REMOVE {p}lease_expires_at, {p}worker_id",
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

    def _transact(self, requests: list[dict[str, Any]]) -> None:
        """Conditional updates applied together or not at all (``TransactWriteItems``); TransactionRefused names the
        requests whose conditions did not hold."""
        try:
            self.table.meta.client.transact_write_items(
                TransactItems=[{"Update": {"TableName": self.table.name, **request}} for request in requests]
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reasons = error.response.get("CancellationReasons") or []
            failed = [index for index, reason in enumerate(reasons) if reason.get("Code") == "ConditionalCheckFailed"]
            if reasons and not failed:
                raise  # cancelled for another reason (a conflict, throttling): the caller's retry decides
            raise TransactionRefused(failed) from None

    def _update_claimed(
        self,
        claim: Claim,
        update: str,
        values: Mapping[str, Any],
        names: Mapping[str, str] | None = None,
        returns: bool = False,
    ) -> dict[str, Any]:
        """One conditional update, applied only while ``claim`` (its record, worker and attempt) is held."""
        try:
            response = self.table.update_item(
                **self._claimed_request(claim, update, values, names), **({"ReturnValues": "ALL_NEW"} if returns else {})
            )
        except ClientError as error:
            if is_conditional_failure(error):
                raise _lost(claim) from None
            raise
        attributes: dict[str, Any] = from_dynamo(response.get("Attributes") or {})
        return attributes

    @staticmethod
    def _claimed_request(
        claim: Claim, update: str, values: Mapping[str, Any], names: Mapping[str, str] | None = None, also: str = ""
    ) -> dict[str, Any]:
        """The ``update_item`` request of ``_update_claimed``: its condition is that ``claim`` is held (and ``also``)."""
        p, path_names = claim.path
        return {
            "Key": claim.key,
            "UpdateExpression": update,
            "ConditionExpression": f"{guard('holds_claim', p)}{also}",
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
            ConditionExpression=f"{guard('step_exists', _STEP + '.')} AND {_waits_on_message(_STEP + '.')}",
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

    def fail_dead_lettered_merge(self, job_id: str, step: str, reason: str, now: float, message_id: str) -> bool:
        """Fail a split step whose merge the dead-lettered message ``message_id`` carried (``protocol.segment_message_holds_merge``),
        and its job. True when this call failed it.

        Only while every segment is done and the step runs, no other message carries the merge (``carrier`` absent
        or this message) and no live merge lease runs through another message.
        """
        return self._update_if(
            Key={"job_id": job_id},
            UpdateExpression=(
                f"SET {_STEP}.#state = :failed, {_STEP}.finished_at = :now, {_STEP}.#error = :reason, "
                f"#status = :job_failed, updated_at = :now REMOVE {_STEP}.lease_expires_at"
            ),
            ConditionExpression=(
                f"{guard('step_running', _STEP + '.')} AND {guard('every_segment_done', _STEP + '.')} "
                f"AND {guard('merge_carried_by', _STEP + '.')}"
            ),
            ExpressionAttributeNames={"#step": step, "#state": "state", "#status": "status", "#error": "error"},
            ExpressionAttributeValues=to_dynamo(
                {
                    ":failed": StepState.FAILED.value,
                    ":running": StepState.RUNNING.value,
                    ":job_failed": JobStatus.FAILED.value,
                    ":job_running": JobStatus.RUNNING.value,
                    ":reason": reason,
                    ":message": message_id,
                    ":now": now,
                }
            ),
        )

    def redrive_merge(self, job_id: str, step: str, reason: str, now: float, message_id: str, new_message_id: str, failures: int) -> bool:
        """A dead-lettered message carried the merge of a split whose budget is not spent: the fresh message
        ``new_message_id`` (already sent) carries it from now on, and the dead letter counts one failure. Only while
        the message carried it (``merge_carried_by``) and ``failures`` is still what the consumer read. True when
        this call moved it (else the fresh message is a duplicate its claim refuses)."""
        return self._update_if(
            Key={"job_id": job_id},
            UpdateExpression=(
                f"SET {_STEP}.failures = {_STEP}.failures + :one, {_STEP}.carrier = :new, {_STEP}.message_id = :new, "
                f"{_STEP}.#error = :reason, updated_at = :now"
            ),
            ConditionExpression=(
                f"{guard('step_running', _STEP + '.')} AND {guard('every_segment_done', _STEP + '.')} "
                f"AND {guard('merge_carried_by', _STEP + '.')} AND {guard('failures_unchanged', _STEP + '.')}"
            ),
            ExpressionAttributeNames={"#step": step, "#state": "state", "#status": "status", "#error": "error"},
            ExpressionAttributeValues=to_dynamo(
                {
                    ":one": 1,
                    ":new": new_message_id,
                    ":reason": reason,
                    ":running": StepState.RUNNING.value,
                    ":job_running": JobStatus.RUNNING.value,
                    ":message": message_id,
                    ":failures": failures,
                    ":now": now,
                }
            ),
        )

    def fail_dead_lettered_segment(self, job_id: str, step: str, segment: Segment, reason: str, now: float, message_id: str) -> bool:
        """Fail a segment whose message SQS dead-lettered, its step and its job, the step's error naming the segment.

        The same rule as ``fail_dead_lettered`` (``_waits_on_message``), on the segment's own item (an absent one
        is pending with no message), and only while its step runs: one transaction, so either both fail or
        neither. A done segment, a finished step, or a segment a live holder with another message works on is
        left alone (False). The step is never marked done.
        """
        job = self.get_job(job_id) or {}
        seg = {
            "Key": {"job_id": segment_item_id(job_id, step, segment.index)},
            "UpdateExpression": f"SET #state = :failed, finished_at = :now, #error = :reason, {_SEGMENT_IDENTITY} REMOVE lease_expires_at",
            "ConditionExpression": f"{guard('no_item')} OR {_waits_on_message('')}",
            "ExpressionAttributeNames": {"#state": "state", "#error": "error", **_SEGMENT_IDENTITY_NAMES},
            "ExpressionAttributeValues": to_dynamo(
                {
                    ":failed": StepState.FAILED.value,
                    ":running": StepState.RUNNING.value,
                    ":pending": StepState.PENDING.value,
                    ":reason": reason,
                    ":message": message_id,
                    ":now": now,
                    **_segment_identity(job, step, segment.index),
                }
            ),
        }
        step_failed = {
            "Key": {"job_id": job_id},
            "UpdateExpression": (
                f"SET {_STEP}.#state = :failed, {_STEP}.finished_at = :now, {_STEP}.#error = :step_reason, "
                f"#status = :job_failed, updated_at = :now REMOVE {_STEP}.lease_expires_at"
            ),
            "ConditionExpression": guard("step_running", _STEP + "."),
            "ExpressionAttributeNames": {"#step": step, "#state": "state", "#status": "status", "#error": "error"},
            "ExpressionAttributeValues": to_dynamo(
                {
                    ":failed": StepState.FAILED.value,
                    ":running": StepState.RUNNING.value,
                    ":job_running": JobStatus.RUNNING.value,
                    ":job_failed": JobStatus.FAILED.value,
                    ":step_reason": f"{segment.label}: {reason}",
                    ":now": now,
                }
            ),
        }
        try:
            self._transact([seg, step_failed])
        except TransactionRefused:
            return False
        return True

    def retry_failed_step(self, job_id: str, step: str, now: float) -> bool:
        """failed -> pending with a fresh retry budget; the job runs again. True when this call moved it.

        ``attempts`` stays: it only ever grows (it fences claims). The router sees the step
        go failed -> pending on the stream and sends it to the step's queue. A split step keeps its
        segments: those done stay done; every other segment no live holder runs goes back to pending with a
        fresh budget and no message (each its own conditional write, ``retried_at`` recorded on it), so the
        step's message resumes them (``Unclaimable.SPLIT``) and nothing done is redone. A segment a live worker
        holds is left to it: its holder commits (its count lands on the step) or loses its lease, after which its
        message takes it over. The segments are written first, then the step: a retry interrupted between them
        leaves the step failed, and is simply run again.
        """
        job = self.get_job(job_id)
        decision = on_retry(StepRecord.parse(job, step))
        if job is None or decision == OnRetry.NOT_FAILED:
            return False
        plan = SegmentPlan.from_step(job["steps"][step])
        if decision == OnRetry.SPLIT and plan is not None:  # each segment: protocol.segment_reset_on_retry, as a guard
            for index in range(plan.count):
                self._update_if(
                    Key={"job_id": segment_item_id(job_id, step, index)},
                    UpdateExpression=(
                        f"SET #state = :pending, failures = :zero, retried_at = :now, {_SEGMENT_IDENTITY} "
                        "REMOVE #error, finished_at, worker_id, lease_expires_at, message_id"
                    ),
                    ConditionExpression=f"{guard('no_item')} OR ({guard('not_done_nor_held')})",
                    ExpressionAttributeNames={"#state": "state", "#error": "error", **_SEGMENT_IDENTITY_NAMES},
                    ExpressionAttributeValues=to_dynamo(
                        {
                            ":pending": StepState.PENDING.value,
                            ":done": StepState.DONE.value,
                            ":running": StepState.RUNNING.value,
                            ":zero": 0,
                            ":now": now,
                            **_segment_identity(job, step, index),
                        }
                    ),
                )
        return self._update_if(
            Key={"job_id": job_id},
            UpdateExpression=(
                f"SET {_STEP}.#state = :pending, {_STEP}.failures = :zero, {_STEP}.retried_at = :now, "
                "#status = :job_running, updated_at = :now "
                f"REMOVE {_STEP}.#error, {_STEP}.finished_at, {_STEP}.worker_id, {_STEP}.lease_expires_at, "
                f"{_STEP}.message_id, {_STEP}.carrier"
            ),
            ConditionExpression=f"{guard('step_exists', _STEP + '.')} AND {guard('failed', _STEP + '.')}",
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

    def claim_announcement(self, job_id: str, finished_at: float) -> bool:
        """Claim the right to announce the job's end recorded at ``finished_at`` (the item's ``updated_at``
        in the stream image that finished it). True once per end: a replayed record, or an older end
        replayed after a newer one, gets False; a job that is retried and ends again gets True again.
        """
        return self._update_if(
            Key={"job_id": job_id},
            UpdateExpression="SET announced_at = :at",
            ConditionExpression=guard("end_unannounced"),
            ExpressionAttributeValues=to_dynamo({":at": finished_at}),
        )

    def release_announcement(self, job_id: str, finished_at: float) -> None:
        """Give back a claim whose announcement could not be sent, so the record's retry sends it."""
        try:
            self.table.update_item(
                Key={"job_id": job_id},
                UpdateExpression="REMOVE announced_at",
                ConditionExpression=guard("announcement_held"),
                ExpressionAttributeValues=to_dynamo({":at": finished_at}),
            )
        except ClientError as error:
            if not is_conditional_failure(error):
                raise


def _claim_ways(p: str) -> list[tuple[str, str, dict[str, Any], dict[str, str]]]:
    """The two ways a record (at prefix ``p``) is claimed: (condition, failures update, values, names)."""
    return [
        (guard("pending", p), f"{p}failures = if_not_exists({p}failures, :zero)", {":pending": StepState.PENDING.value}, {}),
        (
            guard("lease_expired", p),
            f"{p}failures = if_not_exists({p}failures, :zero) + :one, {p}#error = :unanswered",
            {":unanswered": UNANSWERED},
            {"#error": "error"},
        ),
    ]


# Every write that may make a segment's item also names whose it is, and expires it with its job (TTL).
_SEGMENT_IDENTITY = "kind = :kind, parent_job = :parent, #seg_step = :seg_step, #seg_index = :seg_index, expires_at = :expires"
_SEGMENT_IDENTITY_NAMES = {"#seg_step": "step", "#seg_index": "index"}


def _segment_identity(job: Mapping[str, Any], step: str, index: int) -> dict[str, Any]:
    return {
        ":kind": SEGMENT_KIND,
        ":parent": job.get("job_id", ""),
        ":seg_step": step,
        ":seg_index": index,
        ":expires": int(job.get("expires_at") or 0),
    }
