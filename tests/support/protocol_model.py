"""A model of the job protocol's actors around the real JobStore, for the model checker (tests/test_protocol_model.py,
``make check-protocol``).

Everything that decides is the project's own code: ``JobStore``'s conditional writes (against moto in the test
process, one call at a time: DynamoDB's item atomicity), the decisions of ``pipeline_core.protocol`` and the
dead-letter consumer's ``fail_step``/``fail_segment``. What is modelled is what surrounds them, as AWS and the worker
loop behave: an SQS queue (visibility timeout, receive counts, the redrive to a DLQ after ``MAX_RECEIVES``, fresh
copies carrying their chain's origin id), a clock, S3 (who wrote each key), and workers whose lifecycle is cut into
the atomic steps a real worker takes (receive + claim, work + commit, heartbeat), each of which may be interleaved
with any other actor's, and which may crash, pause past their lease and resume, or fail transiently or for good.

``Model.check()`` asserts the invariants; ``Model.quiesce()`` lets every actor finish and asserts every job ended.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

import boto3
from moto import mock_aws

from pipeline_core.jobs import JobStatus, ObjectRef, StepState, result_key
from pipeline_core.jobstore import Claim, ClaimLost, ClaimRefused, JobStore
from pipeline_core.protocol.decisions import OnRefused, on_refused, on_segment_done, unclaimed
from pipeline_core.records import JobRecord, StepRecord, segment_records
from pipeline_core.segment_plan import SegmentPlan, VideoTimeline
from stream_router import deadletter

MAX_RECEIVES = 3  # the step queue's maxReceiveCount
VISIBILITY = 30.0  # and the claim's lease (the worker's visibility timeout)
MAX_ATTEMPTS = 5
RETRY_DELAY = 5.0
STEP = "detect"
RESULTS = "results/"

INVARIANTS = (
    "each segment counted once (segments_done = segments done)",
    "a done step's result_file is the output of the attempt that holds it",
    "no write by a worker that lost its claim commits",
    "each completed split merges once",
    "a failed step has a reason",
    "every job ends (at quiescence)",
)


@dataclass
class Message:
    id: str
    origin: str
    segment: int | None
    visible_at: float
    receives: int = 0


@dataclass
class Task:
    """What a worker holds: a received message and, once claimed, its claim."""

    message: Message
    claim: Claim | None = None
    split_recorded: bool = False  # a whole-step claim that recorded its split and has not sent the messages yet


@dataclass
class Worker:
    name: str
    task: Task | None = None
    paused: bool = False


class Violation(AssertionError):
    pass


@contextmanager
def dynamodb_table() -> Iterator[Any]:
    """A jobs table in moto, in this process."""
    with mock_aws():
        resource = boto3.resource("dynamodb", region_name="us-east-1")
        table = resource.create_table(
            TableName="jobs",
            KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield table


class Model:
    def __init__(self, table: Any, workers: int = 3, segments: int = 0):
        self.store = JobStore(table)
        self.now = 1000.0
        self.ids = itertools.count(1)
        self.queue: dict[str, Message] = {}
        self.dlq: list[Message] = []
        self.s3: dict[str, tuple[str, int, int | None]] = {}  # key -> (worker, attempt, segment) that wrote it
        self.workers = [Worker(f"w{i}") for i in range(workers)]
        self.commits: list[tuple[str, int | None, int]] = []  # (kind, segment, attempt) of each commit the store took
        self.merges = 0
        self.steps = 0
        self.obj = ObjectRef("bucket", "uploads/video.mp4", "v1", 10)
        self.job_id = self.obj.job_id
        self.plan = SegmentPlan(VideoTimeline(10, 10 * 60 * segments, 10), 60) if segments > 1 else None
        assert self.store.create_job(self.obj, [STEP], self.now)
        self.send(None)  # what the router sends for a new job

    # --- SQS ----------------------------------------------------------------------------------------------------

    def send(self, segment: int | None, origin: str | None = None, delay: float = 0.0) -> str:
        message_id = f"m{next(self.ids)}"
        self.queue[message_id] = Message(message_id, origin or message_id, segment, self.now + delay)
        return message_id

    def visible(self) -> list[Message]:
        return sorted((m for m in self.queue.values() if m.visible_at <= self.now), key=lambda m: m.id)

    def pick(self, segment: int | None) -> int:
        """The ``pick`` that receives the first visible message of ``segment`` (None: a step message)."""
        return next(i for i, m in enumerate(self.visible()) if m.segment == segment)

    def _receive(self, pick: int) -> Message | None:
        visible = self.visible()
        if not visible:
            return None
        message = visible[pick % len(visible)]
        if message.receives >= MAX_RECEIVES:  # SQS moves it to the DLQ instead of delivering it again
            del self.queue[message.id]
            self.dlq.append(message)
            return None
        message.receives += 1
        message.visible_at = self.now + VISIBILITY
        return message

    def _delete(self, message: Message) -> None:
        self.queue.pop(message.id, None)

    def _requeue(self, message: Message, delay: float) -> None:
        """A fresh copy carrying the chain's origin (receives from zero), the old one deleted: as the worker does."""
        self._delete(message)
        self.send(message.segment, message.origin, delay)

    # --- the worker's steps -------------------------------------------------------------------------------------

    def tick(self, seconds: float) -> None:
        self.now += seconds

    def receive(self, index: int, pick: int = 0) -> None:
        """An idle worker receives a message and claims what it names (or carries out why it could not)."""
        worker = self.workers[index]
        if worker.paused or worker.task is not None:
            return
        message = self._receive(pick)
        if message is None:
            return
        self.steps += 1
        task = worker.task = Task(message)
        try:
            task.claim = self.store.claims.claim(
                self.job_id, STEP, worker.name, message.origin, self.now, VISIBILITY, segment=message.segment
            )
        except ClaimRefused as refused:
            self._refused(worker, refused, merging=False)
            return
        if task.claim.failures >= MAX_ATTEMPTS:  # attempts with no answer spent the budget: fail, run nothing
            self._commit(worker, lambda c: self.store.claims.mark_failed(c, self.now, "gave up: no answer"), "failed")
            self._settle(worker, delete=True)

    def _refused(self, worker: Worker, refused: ClaimRefused, merging: bool) -> None:
        task = worker.task
        assert task is not None
        step = refused.job.step(STEP) if refused.job is not None else None
        decision = on_refused(refused.reason, step, task.message.segment is not None, merging)
        if decision in (OnRefused.RESUME, OnRefused.RESUME_AND_MERGE) and refused.job is not None:
            self._resume(refused.job, task.message.origin)
            if decision == OnRefused.RESUME_AND_MERGE:
                self._claim_merge(worker)
                return
            self._settle(worker, delete=True)
        elif decision == OnRefused.MERGE:
            self._claim_merge(worker)
        elif decision == OnRefused.POSTPONE:
            self._delete(task.message)
            self.send(task.message.segment, task.message.origin, delay=VISIBILITY)
            worker.task = None
        else:
            self._settle(worker, delete=True)

    def _resume(self, job: JobRecord, message_id: str) -> None:
        """``worker.splitter.Splitter.resume``: resume a split step put back by a retry, send its unclaimed segments."""
        step = job.step(STEP)
        if step is None:
            return
        if step.state == StepState.PENDING:
            self.store.splits.resume_split(self.job_id, STEP, self.now, message_id)
        records = segment_records(step.segment_count, self.store.get_segments(self.job_id, STEP, step.segment_count))
        for index in unclaimed(step, records):
            self.store.splits.record_segment_message(self.job_id, STEP, index, self.send(index), step.retried_at, job)

    def _claim_merge(self, worker: Worker) -> None:
        task = worker.task
        assert task is not None
        try:
            task.claim = self.store.claims.claim_merge(
                self.job_id, STEP, worker.name, task.message.origin, self.now, VISIBILITY, MAX_ATTEMPTS
            )
        except ClaimRefused as refused:
            self._refused(worker, refused, merging=True)

    def _settle(self, worker: Worker, delete: bool) -> None:
        if worker.task is not None and delete:
            self._delete(worker.task.message)
        worker.task = None

    def _commit(self, worker: Worker, write: Any, kind: str) -> bool:
        """One fenced write; a refusal is a lost claim: the worker drops the message (LOST) and writes nothing."""
        claim = worker.task.claim if worker.task else None
        assert claim is not None
        try:
            write(claim)
        except ClaimLost:
            worker.task = None
            return False
        self.commits.append((kind, claim.segment, claim.attempt))
        return True

    def work(self, index: int, outcome: int = 0) -> None:
        """The claimed work runs to its end: 0 finishes (split, segment, merge or whole), 1 fails transiently, 2 for good,
        3 finishes a segment and crashes before it claims the merge (its message comes back)."""
        worker = self.workers[index]
        task = worker.task
        if worker.paused or task is None or task.claim is None:
            return
        self.steps += 1
        claim = task.claim
        if task.split_recorded:
            self._send_segments(worker)
            return
        if outcome == 1:
            if self._commit(worker, lambda c: self.store.claims.release_after_error(c, self.now, "TransientError"), "released"):
                self._delete(task.message)
                self.send(task.message.segment, task.message.origin, RETRY_DELAY)
                worker.task = None
            return
        if outcome == 2:
            if self._commit(worker, lambda c: self.store.claims.mark_failed(c, self.now, "PermanentError: corrupt"), "failed"):
                self._settle(worker, delete=True)
            return
        if claim.segment is None and not claim.merging and self.plan is not None:
            if self._commit(worker, lambda c: self.store.splits.record_split(c, self.plan, self.now), "split"):  # type: ignore[arg-type]
                task.split_recorded = True
            return
        key = result_key(RESULTS, self.obj.key, self.job_id, STEP, claim.attempt, claim.segment)
        self.s3[key] = (worker.name, claim.attempt, claim.segment)  # its own attempt's location: a zombie may write it
        if claim.segment is not None:
            counted: list[tuple[int, int]] = []
            if not self._commit(
                worker, lambda c: counted.append(self.store.splits.mark_segment_done(c, self.now, f"s3://bucket/{key}", {})), "segment"
            ):
                return
            if outcome == 3:
                self.crash(index)
            elif on_segment_done(*counted[0]):
                task.claim = None
                self._claim_merge(worker)
            else:
                self._settle(worker, delete=True)
            return
        if claim.merging:
            parts = self.store.get_segments(self.job_id, STEP, self.plan.count if self.plan else 0)
            assert all(p.state == StepState.DONE for p in parts.values()) and len(parts) == (self.plan.count if self.plan else 0), (
                "a merge was claimed before every segment was done"
            )
        if self._commit(
            worker, lambda c: self.store.claims.mark_done(c, self.now, f"s3://bucket/{key}", {}), "merge" if claim.merging else "done"
        ):
            self.merges += claim.merging
            self._settle(worker, delete=True)

    def _send_segments(self, worker: Worker) -> None:
        """The splitter's sends, after ``record_split``: each segment's message, its id recorded."""
        task = worker.task
        assert task is not None and task.claim is not None and self.plan is not None
        job = self.store.get_job(self.job_id)
        for index in range(self.plan.count):
            self.store.splits.record_segment_message(self.job_id, STEP, index, self.send(index), task.claim.retried_at, job)
        self._settle(worker, delete=True)

    def heartbeat(self, index: int) -> None:
        worker = self.workers[index]
        task = worker.task
        if worker.paused or task is None:
            return
        if task.message.id in self.queue:
            task.message.visible_at = max(task.message.visible_at, self.now + VISIBILITY)
        if task.claim is not None and not task.split_recorded:
            with contextlib.suppress(ClaimLost):  # the keepalive marks it lost; the next write is refused anyway (fencing)
                self.store.claims.extend_lease(task.claim, self.now + VISIBILITY)

    def crash(self, index: int) -> None:
        self.workers[index].task = None  # its message comes back after its visibility timeout
        self.workers[index].paused = False

    def pause(self, index: int) -> None:
        self.workers[index].paused = True

    def resume(self, index: int) -> None:
        self.workers[index].paused = False

    # --- the dead-letter consumer and gpupipe retry -------------------------------------------------------------

    def dead_letter(self) -> None:
        if not self.dlq:
            return
        self.steps += 1
        message = self.dlq.pop(0)
        reason = f"moved to the dead-letter queue after {MAX_RECEIVES} receives"
        with (
            mock.patch.object(deadletter.time, "time", lambda: self.now),
            mock.patch.object(deadletter, "metrics"),
            mock.patch.object(deadletter, "logger"),
        ):
            if message.segment is None:
                deadletter.fail_step(self.store, self.obj, self.job_id, STEP, message.origin, reason, False, {}, self.send)
            else:
                deadletter.fail_segment(self.store, self.job_id, STEP, message.segment, message.origin, reason, {}, self.send)

    def retry(self) -> None:
        """`gpupipe retry`, then what the router sends when the step goes failed -> pending."""
        self.steps += 1
        if self.store.retries.retry_step(self.job_id, STEP, self.now):
            self.send(None)

    # --- invariants ----------------------------------------------------------------------------------------------

    def job(self) -> JobRecord:
        job = self.store.get_job(self.job_id)
        assert job is not None
        return job

    def step(self) -> StepRecord:
        step = self.job().step(STEP)
        assert step is not None
        return step

    def check(self) -> None:
        job = self.job()
        step = job.steps[STEP]
        if step.split:
            segments = self.store.get_segments(self.job_id, STEP, step.segment_count)
            done = sum(segment.state == StepState.DONE for segment in segments.values())
            if done != step.segments_done:
                raise Violation(f"{INVARIANTS[0]}: segments_done {step.segments_done}, {done} segments done")
            for segment in segments.values():
                if segment.state == StepState.DONE:
                    self._written_by_holder(segment.result_file or "", segment.attempts, segment.index)
        if step.state == StepState.DONE:
            self._written_by_holder(step.result_file or "", step.attempts, None)
        for kind, _segment, attempt in self.commits:
            if kind in ("done", "merge") and (step.state != StepState.DONE or attempt != step.attempts):
                raise Violation(f"{INVARIANTS[2]}: a {kind} commit by attempt {attempt}, the step is {step.state} at {step.attempts}")
        if self.merges > 1:
            raise Violation(f"{INVARIANTS[3]}: {self.merges} merges committed")
        if step.state == StepState.FAILED and not step.error:
            raise Violation(f"{INVARIANTS[4]}: {step}")
        if (step.state == StepState.DONE) != (job.status == JobStatus.SUCCEEDED):
            raise Violation(f"the job's status {job.status} does not follow its step {step.state}")

    def _written_by_holder(self, result_file: str, attempt: int, segment: int | None) -> None:
        key = result_file.removeprefix("s3://bucket/")
        writer = self.s3.get(key)
        if writer is None or (writer[1], writer[2]) != (attempt, segment):
            raise Violation(f"{INVARIANTS[1]}: {result_file} was written by {writer}, the record holds attempt {attempt}")

    def quiesce(self, rounds: int = 60) -> JobRecord:
        """No more faults: every actor runs to its end. The job must end."""
        for worker in self.workers:
            worker.paused = False
        for _ in range(rounds):
            job = self.job()
            if job.ended and not any(w.task for w in self.workers):
                return job
            for index, worker in enumerate(self.workers):
                if worker.task is not None:
                    self.heartbeat(index)
                    self.work(index)
                else:
                    self.receive(index)
                self.check()
            self.dead_letter()
            if not self.visible() and not any(w.task for w in self.workers):
                self.tick(VISIBILITY + 1)
        step = self.step()
        raise Violation(
            f"{INVARIANTS[5]}: status {self.job().status}, step {step.state} (segments {step.segments_done}/"
            f"{step.segment_count}, holder {step.worker_id}), queue {list(self.queue.values())}, dlq {self.dlq}"
        )
