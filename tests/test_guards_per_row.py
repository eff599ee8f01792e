"""Each row of the protocol's tables is made by the method it names, through exactly the guards it names.

For every row: a job is brought to the row's source phase with the store's own writes, the row's method is called
as its actor calls it, and the test asserts that the step (or segment) moved to the row's target phase, and that the
conditional writes the method made (those DynamoDB applied; a transaction's together) were built from exactly the
guards the row cites: no fewer (a move the table says is guarded is not), no more (a guard the table does not
show). The writes are recorded at the store's one seam to DynamoDB (``dynamo.table.Table``), against moto.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pytest

from pipeline_core.dynamo.expressions import Cond, Update, Value
from pipeline_core.dynamo.table import ConditionFailed, Table, TransactionRefused, Write
from pipeline_core.graph import Graph
from pipeline_core.jobs import JobStatus, ObjectRef
from pipeline_core.jobstore import Claim, JobStore
from pipeline_core.protocol.guards import no_item
from pipeline_core.protocol.phases import Phase, SegmentPhase
from pipeline_core.protocol.table import JOB_TRANSITIONS, SEGMENT_TRANSITIONS, TRANSITIONS, JobTransition, SegmentTransition, Transition
from pipeline_core.records import JOB, JobRecord, job_key
from pipeline_core.segment_plan import SegmentPlan, VideoTimeline
from tests.support.protocol_model import dynamodb_table

pytestmark = pytest.mark.integration

STEP = "detect"
OBJ = ObjectRef("bucket", "uploads/video.mp4", "v1", 10)
PLAN = SegmentPlan(VideoTimeline(10, 10 * 60 * 3, 10), 60)  # three segments
LEASE = 30.0
T0 = 1000.0
LATE = T0 + 10 * LEASE  # every lease taken at T0 has run out


class RecordingTable(Table):
    """The real table, recording the guards of each conditional write it applied."""

    def __init__(self, resource: Any):
        super().__init__(resource)
        self.applied: list[frozenset[str]] = []

    def put(self, item: Mapping[str, Any], condition: Cond) -> None:
        super().put(item, condition)
        self.applied.append(condition.guards)

    def update(self, write: Write, returns_new: bool = False) -> dict[str, Any]:
        result = super().update(write, returns_new)
        self.applied.append(write.condition.guards)
        return result

    def transact(self, writes: Sequence[Write]) -> None:
        super().transact(writes)
        self.applied += [write.condition.guards for write in writes]


class StepOutcome(StrEnum):
    DONE = "done"
    FAILED = "failed"
    RUNNING = "running"


@dataclass
class World:
    store: JobStore
    table: RecordingTable
    claims: dict[str, Claim] = field(default_factory=dict)

    @property
    def job(self) -> JobRecord:
        job = self.store.get_job(OBJ.job_id)
        assert job is not None
        return job

    def phase(self) -> Phase:
        step = self.job.step(STEP)
        assert step is not None
        return step.phase

    def segment_phase(self, index: int = 0) -> SegmentPhase:
        segment = self.store.get_segment(OBJ.job_id, STEP, index)
        return segment.phase if segment is not None else SegmentPhase.UNSENT

    # --- bringing a job to a phase ---------------------------------------------------------------------------------

    def pending(self, steps: Sequence[str] = (STEP,)) -> World:
        assert self.store.create_job(OBJ, list(steps), T0)
        return self

    def running(self, steps: Sequence[str] = (STEP,)) -> World:
        self.pending(steps)
        self.claims["step"] = self.store.claims.claim(OBJ.job_id, STEP, "w1", "m1", T0, LEASE)
        return self

    # --- graphs: ``first`` -> ``detect`` (and ``other``, a root beside them) -----------------------------------------

    def first_done(self, graph: Sequence[tuple[str, list[str]]] = (("first", []), (STEP, ["first"]))) -> World:
        assert self.store.create_job(OBJ, Graph.of(list(graph)), T0)
        first = self.store.claims.claim(OBJ.job_id, "first", "w1", "m-first", T0, LEASE)
        self.store.claims.mark_done(first, T0, "s3://bucket/first.json", {})
        return self

    def first_failed(self) -> World:
        assert self.store.create_job(OBJ, Graph.of([("first", []), (STEP, ["first"])]), T0)
        first = self.store.claims.claim(OBJ.job_id, "first", "w1", "m-first", T0, LEASE)
        self.store.claims.mark_failed(first, T0, "PermanentError: corrupt")
        return self

    def downstream_of_first(self, outcome: StepOutcome) -> World:
        """``first`` done, ``detect`` (after it) queued and claimed, then done or failed, or left running while the
        root beside them, ``other``, fails the job."""
        self.first_done((("first", []), ("other", []), (STEP, ["first"])))
        assert self.store.joins.queue(OBJ.job_id, STEP, ("first",), "record-1", T0)
        claim = self.store.claims.claim(OBJ.job_id, STEP, "w1", "m1", T0, LEASE)
        if outcome == StepOutcome.DONE:
            other = self.store.claims.claim(OBJ.job_id, "other", "w2", "m-other", T0, LEASE)
            self.store.claims.mark_done(other, T0, "s3://bucket/other.json", {})
            self.store.claims.mark_done(claim, T0, "s3://bucket/result.json", {})
        elif outcome == StepOutcome.FAILED:
            self.store.claims.mark_failed(claim, T0, "PermanentError: corrupt")
        else:
            other = self.store.claims.claim(OBJ.job_id, "other", "w2", "m-other", T0, LEASE)
            self.store.claims.mark_failed(other, T0, "PermanentError: corrupt")
        return self

    def failed(self) -> World:
        self.running().store.claims.mark_failed(self.claims["step"], T0, "PermanentError: corrupt")
        return self

    def split(self, done: int = 0, steps: Sequence[str] = (STEP,)) -> World:
        self.running(steps).store.splits.record_split(self.claims["step"], PLAN, T0, max_attempts=5)
        for index in range(done):
            self.segment_done(index)
        return self

    def claim_segment(self, index: int, now: float = T0, worker: str = "w1") -> Claim:
        claim = self.store.claims.claim(OBJ.job_id, STEP, worker, f"m-seg-{index}", now, LEASE, segment=index)
        self.claims[f"segment {index}"] = claim
        return claim

    def segment_done(self, index: int) -> None:
        self.store.splits.mark_segment_done(self.claim_segment(index), T0, f"s3://bucket/segment-{index}.json", {})

    def waiting_to_merge(self, steps: Sequence[str] = (STEP,)) -> World:
        return self.split(done=PLAN.count, steps=steps)

    def merging(self, steps: Sequence[str] = (STEP,)) -> World:
        self.waiting_to_merge(steps)
        self.claims["merge"] = self.store.claims.claim_merge(OBJ.job_id, STEP, "w1", "m-merge", T0, LEASE, max_attempts=5)
        return self

    def failed_split(self, live_segment: bool = False) -> World:
        """A split step failed by its segment 1; with ``live_segment``, segment 0 is held under a live lease."""
        self.split()
        if live_segment:
            self.claim_segment(0)
        self.store.claims.mark_failed(self.claim_segment(1), T0, "segment 2/3: PermanentError: corrupt")
        return self

    def split_pending(self, live_segment: bool = False) -> World:
        self.failed_split(live_segment)
        assert self.store.retries.retry_step(OBJ.job_id, STEP, T0 + 1)
        return self

    def split_pending_all_done(self) -> World:
        self.merging().store.claims.mark_failed(self.claims["merge"], T0, "merge: PermanentError: out of disk")
        assert self.store.retries.retry_step(OBJ.job_id, STEP, T0 + 1)
        return self

    def record_message(self, index: int, message_id: str = "m-sent") -> None:
        step = self.job.step(STEP)
        assert step is not None
        assert self.store.splits.record_segment_message(OBJ.job_id, STEP, index, message_id, step.retried_at, self.job)


@pytest.fixture
def world() -> Iterator[World]:
    with dynamodb_table() as resource:
        table = RecordingTable(resource)
        yield World(JobStore(table), table)


Scenario = tuple[Callable[[World], Any], Callable[[World], Any]]  # (bring the job to the row's source, make the move)


def _dead_segment(world: World, index: int, message_id: str, now: float = T0) -> None:
    segment = PLAN.segments[index]
    assert world.store.dead_letters.fail_segment(world.job, STEP, segment, "moved to the dead-letter queue", now, message_id)


STEP_ROWS: dict[tuple[Phase, str, Phase, str, str], Scenario] = {
    (Phase.PENDING, "claim", Phase.RUNNING, "claims.claim", ""): (
        lambda w: w.pending(),
        lambda w: w.store.claims.claim(OBJ.job_id, STEP, "w1", "m1", T0, LEASE),
    ),
    (Phase.RUNNING, "take over an expired lease", Phase.RUNNING, "claims.claim", ""): (
        lambda w: w.running(),
        lambda w: w.store.claims.claim(OBJ.job_id, STEP, "w2", "m2", LATE, LEASE),
    ),
    (Phase.RUNNING, "finish", Phase.SUCCEEDED, "claims.mark_done", "the job's last"): (
        lambda w: w.running(),
        lambda w: w.store.claims.mark_done(w.claims["step"], T0, "s3://bucket/result.json", {}),
    ),
    (Phase.RUNNING, "fail", Phase.FAILED, "claims.mark_failed", ""): (
        lambda w: w.running(),
        lambda w: w.store.claims.mark_failed(w.claims["step"], T0, "PermanentError: corrupt"),
    ),
    (Phase.RUNNING, "release", Phase.PENDING, "claims.release_after_error", ""): (
        lambda w: w.running(),
        lambda w: w.store.claims.release_after_error(w.claims["step"], T0, "TransientError: throttled"),
    ),
    (Phase.RUNNING, "split", Phase.SPLIT, "splits.record_split", ""): (
        lambda w: w.running(),
        lambda w: w.store.splits.record_split(w.claims["step"], PLAN, T0, max_attempts=5),
    ),
    (Phase.SPLIT, "segment done", Phase.SPLIT, "splits.mark_segment_done", ""): (
        lambda w: (w.split(), w.claim_segment(0)),
        lambda w: w.store.splits.mark_segment_done(w.claims["segment 0"], T0, "s3://bucket/s0.json", {}),
    ),
    (Phase.SPLIT, "last segment done", Phase.WAITING_TO_MERGE, "splits.mark_segment_done", ""): (
        lambda w: (w.split(done=2), w.claim_segment(2)),
        lambda w: w.store.splits.mark_segment_done(w.claims["segment 2"], T0, "s3://bucket/s2.json", {}),
    ),
    (Phase.SPLIT, "segment failed", Phase.FAILED, "claims.mark_failed", ""): (
        lambda w: (w.split(), w.claim_segment(0)),
        lambda w: w.store.claims.mark_failed(w.claims["segment 0"], T0, "segment 1/3: PermanentError: corrupt"),
    ),
    (Phase.SPLIT, "dead letter", Phase.FAILED, "dead_letters.fail_segment", ""): (
        lambda w: w.split(),
        lambda w: _dead_segment(w, 0, "m-seg-0"),
    ),
    (Phase.SPLIT, "dead letter", Phase.FAILED, "dead_letters.fail_step", ""): (
        lambda w: w.split(),
        lambda w: w.store.dead_letters.fail_step(OBJ.job_id, STEP, "moved to the dead-letter queue", T0, "m1"),
    ),
    (Phase.WAITING_TO_MERGE, "claim merge", Phase.MERGING, "claims.claim_merge", ""): (
        lambda w: w.waiting_to_merge(),
        lambda w: w.store.claims.claim_merge(OBJ.job_id, STEP, "w1", "m-seg-2", T0, LEASE, max_attempts=5),
    ),
    (Phase.MERGING, "take over an expired lease", Phase.MERGING, "claims.claim_merge", ""): (
        lambda w: w.merging(),
        lambda w: w.store.claims.claim_merge(OBJ.job_id, STEP, "w2", "m-seg-2", LATE, LEASE, max_attempts=5),
    ),
    (Phase.MERGING, "finish", Phase.SUCCEEDED, "claims.mark_done", "the job's last"): (
        lambda w: w.merging(),
        lambda w: w.store.claims.mark_done(w.claims["merge"], T0, "s3://bucket/merged.json", {}),
    ),
    (Phase.MERGING, "fail", Phase.FAILED, "claims.mark_failed", ""): (
        lambda w: w.merging(),
        lambda w: w.store.claims.mark_failed(w.claims["merge"], T0, "merge: PermanentError: out of disk"),
    ),
    (Phase.MERGING, "release", Phase.WAITING_TO_MERGE, "claims.release_after_error", ""): (
        lambda w: w.merging(),
        lambda w: w.store.claims.release_after_error(w.claims["merge"], T0, "TransientError: throttled"),
    ),
    (Phase.WAITING_TO_MERGE, "dead letter", Phase.FAILED, "dead_letters.fail_merge", ""): (
        lambda w: w.waiting_to_merge(),
        lambda w: w.store.dead_letters.fail_merge(OBJ.job_id, STEP, "merge: moved to the dead-letter queue", T0, "m-seg-2"),
    ),
    (Phase.MERGING, "dead letter", Phase.FAILED, "dead_letters.fail_merge", ""): (
        lambda w: w.merging(),
        lambda w: w.store.dead_letters.fail_merge(OBJ.job_id, STEP, "merge: moved to the dead-letter queue", T0, "m-merge"),
    ),
    (Phase.WAITING_TO_MERGE, "dead letter", Phase.WAITING_TO_MERGE, "dead_letters.redrive_merge", ""): (
        lambda w: w.waiting_to_merge(),
        lambda w: w.store.dead_letters.redrive_merge(OBJ.job_id, STEP, "merge: moved", T0, "m-seg-2", "m-fresh", 0),
    ),
    (Phase.MERGING, "dead letter", Phase.MERGING, "dead_letters.redrive_merge", ""): (
        lambda w: w.merging(),
        lambda w: w.store.dead_letters.redrive_merge(OBJ.job_id, STEP, "merge: moved", T0, "m-merge", "m-fresh", 0),
    ),
    (Phase.PENDING, "dead letter", Phase.FAILED, "dead_letters.fail_step", ""): (
        lambda w: w.pending(),
        lambda w: w.store.dead_letters.fail_step(OBJ.job_id, STEP, "moved to the dead-letter queue", T0, "m1"),
    ),
    (Phase.RUNNING, "dead letter", Phase.FAILED, "dead_letters.fail_step", ""): (
        lambda w: w.running(),
        lambda w: w.store.dead_letters.fail_step(OBJ.job_id, STEP, "moved to the dead-letter queue", T0, "m1"),
    ),
    (Phase.SPLIT_PENDING, "dead letter", Phase.FAILED, "dead_letters.fail_step", ""): (
        lambda w: w.split_pending(),
        lambda w: w.store.dead_letters.fail_step(OBJ.job_id, STEP, "moved to the dead-letter queue", T0 + 2, "m-retry"),
    ),
    (Phase.FAILED, "gpupipe retry", Phase.PENDING, "retries.retry_step", ""): (
        lambda w: w.failed(),
        lambda w: w.store.retries.retry_step(OBJ.job_id, STEP, T0 + 1),
    ),
    (Phase.FAILED, "gpupipe retry", Phase.SPLIT_PENDING, "retries.retry_step", ""): (
        lambda w: w.failed_split(),
        lambda w: w.store.retries.retry_step(OBJ.job_id, STEP, T0 + 1),
    ),
    (Phase.SPLIT_PENDING, "resume", Phase.SPLIT, "splits.resume_split", ""): (
        lambda w: w.split_pending(),
        lambda w: w.store.splits.resume_split(OBJ.job_id, STEP, T0 + 2, "m-retry"),
    ),
    (Phase.SPLIT_PENDING, "resume", Phase.WAITING_TO_MERGE, "splits.resume_split", ""): (
        lambda w: w.split_pending_all_done(),
        lambda w: w.store.splits.resume_split(OBJ.job_id, STEP, T0 + 2, "m-retry"),
    ),
    (Phase.FAILED, "segment done", Phase.FAILED, "splits.mark_segment_done", ""): (
        lambda w: w.failed_split(live_segment=True),
        lambda w: w.store.splits.mark_segment_done(w.claims["segment 0"], T0, "s3://bucket/s0.json", {}),
    ),
    (Phase.SPLIT_PENDING, "segment done", Phase.SPLIT_PENDING, "splits.mark_segment_done", ""): (
        lambda w: w.split_pending(live_segment=True),
        lambda w: w.store.splits.mark_segment_done(w.claims["segment 0"], T0, "s3://bucket/s0.json", {}),
    ),
    (Phase.RUNNING, "finish", Phase.SUCCEEDED, "claims.mark_done", "another step left"): (
        lambda w: w.running(steps=(STEP, "after")),
        lambda w: w.store.claims.mark_done(w.claims["step"], T0, "s3://bucket/result.json", {}),
    ),
    (Phase.MERGING, "finish", Phase.SUCCEEDED, "claims.mark_done", "another step left"): (
        lambda w: w.merging(steps=(STEP, "after")),
        lambda w: w.store.claims.mark_done(w.claims["merge"], T0, "s3://bucket/merged.json", {}),
    ),
    (Phase.WAITING, "every parent succeeded", Phase.PENDING, "joins.queue", "the first record"): (
        lambda w: w.first_done(),
        lambda w: w.store.joins.queue(OBJ.job_id, STEP, ("first",), "record-1", T0),
    ),
    (Phase.PENDING, "every parent succeeded", Phase.PENDING, "joins.queue", "the same record"): (
        lambda w: (w.first_done(), w.store.joins.queue(OBJ.job_id, STEP, ("first",), "record-1", T0)),
        lambda w: w.store.joins.queue(OBJ.job_id, STEP, ("first",), "record-1", T0),
    ),
    (Phase.SUCCEEDED, "gpupipe retry --from", Phase.PENDING, "retries.retry_from", "run again"): (
        lambda w: w.store.claims.mark_done(w.running().claims["step"], T0, "s3://bucket/result.json", {}),
        lambda w: w.store.retries.retry_from(OBJ.job_id, STEP, T0 + 1),
    ),
    (Phase.SUCCEEDED, "gpupipe retry --from", Phase.PENDING, "retries.retry_from", "split"): (
        lambda w: w.store.claims.mark_done(w.merging().claims["merge"], T0, "s3://bucket/merged.json", {}),
        lambda w: w.store.retries.retry_from(OBJ.job_id, STEP, T0 + 1),
    ),
    (Phase.FAILED, "gpupipe retry --from", Phase.PENDING, "retries.retry_from", "run again"): (
        lambda w: w.failed(),
        lambda w: w.store.retries.retry_from(OBJ.job_id, STEP, T0 + 1),
    ),
    (Phase.SUCCEEDED, "gpupipe retry --from upstream", Phase.WAITING, "retries.retry_from", ""): (
        lambda w: w.downstream_of_first(StepOutcome.DONE),
        lambda w: w.store.retries.retry_from(OBJ.job_id, "first", T0 + 1),
    ),
    (Phase.FAILED, "gpupipe retry --from upstream", Phase.WAITING, "retries.retry_from", ""): (
        lambda w: w.downstream_of_first(StepOutcome.FAILED),
        lambda w: w.store.retries.retry_from(OBJ.job_id, "first", T0 + 1),
    ),
    (Phase.WAITING, "gpupipe retry --from upstream", Phase.WAITING, "retries.retry_from", ""): (
        lambda w: w.first_failed(),
        lambda w: w.store.retries.retry_from(OBJ.job_id, "first", T0 + 1),
    ),
    (Phase.RUNNING, "gpupipe retry --from upstream", Phase.WAITING, "retries.retry_from", ""): (
        lambda w: w.downstream_of_first(StepOutcome.RUNNING),
        lambda w: w.store.retries.retry_from(OBJ.job_id, "first", T0 + 1),
    ),
}

SEGMENT_ROWS: dict[tuple[SegmentPhase, str, SegmentPhase, str, str], Scenario] = {
    (SegmentPhase.DONE, "gpupipe retry --from", SegmentPhase.UNSENT, "retries.retry_from", "done"): (
        lambda w: w.store.claims.mark_done(w.merging().claims["merge"], T0, "s3://bucket/merged.json", {}),
        lambda w: w.store.retries.retry_from(OBJ.job_id, STEP, T0 + 1),
    ),
    (SegmentPhase.FAILED, "gpupipe retry --from", SegmentPhase.UNSENT, "retries.retry_from", "failed"): (
        lambda w: (w.split(), w.store.claims.mark_failed(w.claim_segment(0), T0, "PermanentError: corrupt")),
        lambda w: w.store.retries.retry_from(OBJ.job_id, STEP, T0 + 1),
    ),
    (SegmentPhase.UNSENT, "message sent", SegmentPhase.QUEUED, "splits.record_segment_message", "its message's id"): (
        lambda w: w.split(),
        lambda w: w.record_message(0),
    ),
    (SegmentPhase.UNSENT, "message sent", SegmentPhase.QUEUED, "splits.record_segment_message", "after a retry"): (
        lambda w: (w.split_pending(), w.store.splits.resume_split(OBJ.job_id, STEP, T0 + 2, "m-retry")),
        lambda w: w.record_message(0),
    ),
    (SegmentPhase.UNSENT, "claim", SegmentPhase.RUNNING, "claims.claim", ""): (lambda w: w.split(), lambda w: w.claim_segment(0)),
    (SegmentPhase.QUEUED, "claim", SegmentPhase.RUNNING, "claims.claim", ""): (
        lambda w: (w.split(), w.record_message(0)),
        lambda w: w.claim_segment(0),
    ),
    (SegmentPhase.RUNNING, "take over an expired lease", SegmentPhase.RUNNING, "claims.claim", ""): (
        lambda w: (w.split(), w.claim_segment(0)),
        lambda w: w.claim_segment(0, now=LATE, worker="w2"),
    ),
    (SegmentPhase.RUNNING, "finish", SegmentPhase.DONE, "splits.mark_segment_done", ""): (
        lambda w: (w.split(), w.claim_segment(0)),
        lambda w: w.store.splits.mark_segment_done(w.claims["segment 0"], T0, "s3://bucket/s0.json", {}),
    ),
    (SegmentPhase.RUNNING, "fail", SegmentPhase.FAILED, "claims.mark_failed", ""): (
        lambda w: (w.split(), w.claim_segment(0)),
        lambda w: w.store.claims.mark_failed(w.claims["segment 0"], T0, "PermanentError: corrupt"),
    ),
    (SegmentPhase.RUNNING, "release", SegmentPhase.QUEUED, "claims.release_after_error", ""): (
        lambda w: (w.split(), w.claim_segment(0)),
        lambda w: w.store.claims.release_after_error(w.claims["segment 0"], T0, "TransientError: throttled"),
    ),
    (SegmentPhase.UNSENT, "dead letter", SegmentPhase.FAILED, "dead_letters.fail_segment", ""): (
        lambda w: w.split(),
        lambda w: _dead_segment(w, 0, "m-seg-0"),
    ),
    (SegmentPhase.QUEUED, "dead letter", SegmentPhase.FAILED, "dead_letters.fail_segment", ""): (
        lambda w: (w.split(), w.record_message(0)),
        lambda w: _dead_segment(w, 0, "m-sent"),
    ),
    (SegmentPhase.RUNNING, "dead letter", SegmentPhase.FAILED, "dead_letters.fail_segment", ""): (
        lambda w: (w.split(), w.claim_segment(0)),
        lambda w: _dead_segment(w, 0, "m-other", now=LATE),
    ),
    (SegmentPhase.FAILED, "gpupipe retry", SegmentPhase.UNSENT, "retries.retry_step", ""): (
        lambda w: (w.split(), w.store.claims.mark_failed(w.claim_segment(0), T0, "PermanentError: corrupt")),
        lambda w: w.store.retries.retry_step(OBJ.job_id, STEP, T0 + 1),
    ),
    (SegmentPhase.QUEUED, "gpupipe retry", SegmentPhase.UNSENT, "retries.retry_step", ""): (
        lambda w: (w.failed_split(), w.record_message(0)),
        lambda w: w.store.retries.retry_step(OBJ.job_id, STEP, T0 + 1),
    ),
    (SegmentPhase.RUNNING, "gpupipe retry", SegmentPhase.UNSENT, "retries.retry_step", ""): (
        lambda w: (w.failed_split(live_segment=True),),
        lambda w: w.store.retries.retry_step(OBJ.job_id, STEP, LATE),
    ),
}

JOB_ROWS: dict[tuple[str, str, str], tuple[Scenario, JobStatus | None]] = {
    ("none", "upload", "create_job"): ((lambda w: None, lambda w: w.store.create_job(OBJ, [STEP], T0)), JobStatus.PENDING),
    ("none", "upload, its S3 event straight on a step's queue", "claims.create_claimed"): (
        (lambda w: None, lambda w: w.store.claims.create_claimed(OBJ, STEP, "w1", "m1", T0, LEASE)),
        JobStatus.RUNNING,
    ),
    ("none", "dead letter", "create_job"): ((lambda w: None, lambda w: w.store.create_job(OBJ, [STEP], T0)), JobStatus.PENDING),
    ("running", "last step ends", "set_status"): (
        (lambda w: w.running(), lambda w: w.store.set_status(OBJ.job_id, JobStatus.FAILED, T0)),
        JobStatus.FAILED,
    ),
    ("ended", "announce", "claim_announcement"): (
        (lambda w: w.failed(), lambda w: w.store.claim_announcement(OBJ.job_id, T0)),
        None,
    ),
    ("ended", "announcement not sent", "release_announcement"): (
        (lambda w: (w.failed(), w.store.claim_announcement(OBJ.job_id, T0)), lambda w: w.store.release_announcement(OBJ.job_id, T0)),
        None,
    ),
}


def _step_scenario(row: Transition) -> Scenario:
    matches = [
        scenario
        for (source, event, target, code, note), scenario in STEP_ROWS.items()
        if (source, event, target, code) == (row.source, row.event.value, row.target, row.code) and row.note.startswith(note)
    ]
    assert len(matches) == 1, f"no single scenario for {row}"
    return matches[0]


def _segment_scenario(row: SegmentTransition) -> Scenario:
    matches = [
        scenario
        for (source, event, target, code, note), scenario in SEGMENT_ROWS.items()
        if (source, event, target, code) == (row.source, row.event.value, row.target, row.code) and row.note.startswith(note)
    ]
    assert len(matches) == 1, f"no single scenario for {row}"
    return matches[0]


def _moved(world: World, move: Callable[[World], Any]) -> frozenset[str]:
    """The guards of the writes ``move`` made that DynamoDB applied."""
    world.table.applied.clear()
    result = move(world)
    assert result is not False, "the move's write was refused"
    return frozenset().union(*world.table.applied)


@pytest.mark.parametrize("row", TRANSITIONS, ids=lambda t: f"{t.source}-{t.event.value}-{t.target}-{t.code}")
def test_each_step_row_moves_through_exactly_its_guards(world: World, row: Transition) -> None:
    setup, move = _step_scenario(row)
    setup(world)
    assert world.phase() == row.source
    assert _moved(world, move) == set(row.guards)
    assert world.phase() == row.target


@pytest.mark.parametrize("row", SEGMENT_TRANSITIONS, ids=lambda t: f"{t.source}-{t.event.value}-{t.target}-{t.code}-{t.note[:12]}")
def test_each_segment_row_moves_through_exactly_its_guards(world: World, row: SegmentTransition) -> None:
    setup, move = _segment_scenario(row)
    setup(world)
    assert world.segment_phase() == row.source
    assert _moved(world, move) == set(row.guards)
    assert world.segment_phase() == row.target


@pytest.mark.parametrize("row", JOB_TRANSITIONS, ids=lambda t: f"{t.source}-{t.event}-{t.code}")
def test_each_job_row_writes_through_exactly_its_guards(world: World, row: JobTransition) -> None:
    (setup, move), status = JOB_ROWS[(row.source, row.event, row.code)]
    setup(world)
    assert _moved(world, move) == set(row.guards)
    if status is not None:
        assert world.job.status == status


def test_every_row_has_its_scenario_and_no_scenario_is_left_over() -> None:
    assert len(STEP_ROWS) == len(TRANSITIONS) and all(_step_scenario(row) for row in TRANSITIONS)
    assert len(SEGMENT_ROWS) == len(SEGMENT_TRANSITIONS) and all(_segment_scenario(row) for row in SEGMENT_TRANSITIONS)
    assert len(JOB_ROWS) == len(JOB_TRANSITIONS)


def test_a_refused_write_is_recorded_as_not_applied(world: World) -> None:
    """The recording seam itself: a write DynamoDB refused adds nothing (so the rows above see applied writes only)."""
    world.running()
    world.table.applied.clear()
    with pytest.raises(ConditionFailed):
        world.table.update(Write(job_key(OBJ.job_id), Update().set(JOB.updated_at, Value("now", T0)), no_item()))
    with pytest.raises(TransactionRefused):
        world.table.transact([Write(job_key(OBJ.job_id), Update().set(JOB.updated_at, Value("now", T0)), no_item())])
    assert world.table.applied == []
