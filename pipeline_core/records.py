"""Job and segment items <-> typed records: the one module that knows the items' attribute names.

The jobs table holds two kinds of item. A **job item** (key ``job_id``, 32 hex digits) holds the uploaded object,
the job's ``status`` and one record per step under ``steps.<name>``. A **segment item** (key
``<job id>#<step>#<index>``) holds one segment of a split step. Everything else reads them as records, parsed once
here (``JobRecord.parse``, ``SegmentRecord.parse``), and writes them through expressions whose attribute paths come
from here too (``JobAt``, ``StepAt``, ``SegmentAt``): no other module spells an attribute's name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline_core.dynamo.expressions import ROOT, Key, Path, Update, Value
from pipeline_core.dynamo.table import from_dynamo
from pipeline_core.graph import Graph
from pipeline_core.jobs import DEFAULT_TTL_DAYS, JobStatus, ObjectRef, StepState
from pipeline_core.protocol.phases import Phase, SegmentPhase
from pipeline_core.segment_plan import SegmentPlan, VideoTimeline

SEGMENT_KIND = "segment"  # the ``kind`` of a segment item; job items have none (they have ``step_names``)
KEY = "job_id"  # the table's partition key, for both kinds of item

# --- where each attribute lives, for expressions ------------------------------------------------------------------


class _Attr:
    """An attribute of a record, as a path under the record's location (``StepAt(...).state``)."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, at: _At, owner: type | None = None) -> Path:
        return at.prefix / self.name


class _At:
    def __init__(self, prefix: Path):
        self.prefix = prefix


class RecordAt(_At):
    """The attributes a step's record (in its job item) and a segment's item share: the claim and its outcome."""

    state = _Attr("state")
    attempts = _Attr("attempts")  # the fencing token: every claim gets a higher one
    failures = _Attr("failures")  # spent against the retry budget
    worker_id = _Attr("worker_id")
    message_id = _Attr("message_id")  # the message (its chain's origin id) that holds or last held it
    lease_expires_at = _Attr("lease_expires_at")
    started_at = _Attr("started_at")
    finished_at = _Attr("finished_at")
    error = _Attr("error")
    result_file = _Attr("result_file")  # the committed attempt's result.json
    timings = _Attr("timings")
    retried_at = _Attr("retried_at")  # when `gpupipe retry` last put it back

    def last_run(self) -> tuple[Path, ...]:
        """What a record run again from scratch forgets: its last attempt's holder and outcome (``attempts`` stays:
        it only ever grows, and fences every claim)."""
        return (self.error, self.finished_at, self.worker_id, self.lease_expires_at, self.message_id, self.result_file, self.timings)


class StepAt(RecordAt):
    """One step's record: ``steps.<name>.`` in its job item."""

    segment_count = _Attr("segment_count")  # present once split
    segments_done = _Attr("segments_done")
    segment_seconds = _Attr("segment_seconds")
    plan = _Attr("plan")
    carrier = _Attr("carrier")  # the message that resumed a split step after a retry, or holds its merge
    after = _Attr("after")  # the steps whose results it reads (recorded at the job's creation)
    queued_by = _Attr("queued_by")  # the stream record whose job image found its parents done and queued it
    max_attempts = _Attr("max_attempts")
    merge_started_at = _Attr("merge_started_at")

    def last_run(self) -> tuple[Path, ...]:
        """A step's also: how it was carried, queued and split."""
        split = (self.segment_count, self.segments_done, self.segment_seconds, self.plan, self.max_attempts, self.merge_started_at)
        return (*super().last_run(), self.carrier, self.queued_by, *split)

    def __init__(self, step: str, label: str = "step"):
        """``label`` names the placeholder of the step's name (``#step``): a write that names several steps gives
        each its own."""
        super().__init__(ROOT / "steps" / Key(label, step))


class SegmentAt(RecordAt):
    """A segment's own item."""

    job_id = _Attr(KEY)
    kind = _Attr("kind")
    parent_job = _Attr("parent_job")
    step = _Attr("step")
    index = _Attr("index")
    expires_at = _Attr("expires_at")

    def __init__(self) -> None:
        super().__init__(ROOT)


class JobAt(_At):
    """A job item's own attributes."""

    job_id = _Attr(KEY)
    status = _Attr("status")
    updated_at = _Attr("updated_at")
    announced_at = _Attr("announced_at")  # the end (its updated_at) whose announcement is claimed

    def __init__(self) -> None:
        super().__init__(ROOT)

    @staticmethod
    def step(name: str) -> StepAt:
        return StepAt(name)


JOB = JobAt()
SEGMENT = SegmentAt()


def job_key(job_id: str) -> dict[str, str]:
    return {KEY: job_id}


def segment_item_id(job_id: str, step: str, index: int) -> str:
    """The key of a segment's own item: ``<job id>#<step>#<index>`` (a job id never holds ``#``)."""
    return f"{job_id}#{step}#{index:05d}"


def segment_key(job_id: str, step: str, index: int) -> dict[str, str]:
    return {KEY: segment_item_id(job_id, step, index)}


# --- records, parsed once from each item --------------------------------------------------------------------------


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class StepRecord:
    """One step of a job item, as every decision reads it."""

    name: str
    state: StepState
    job_status: JobStatus
    attempts: int = 0
    failures: int = 0
    worker_id: str | None = None
    message_id: str | None = None  # the message the step was claimed (or resumed) through
    carrier: str | None = None  # a split step's: the message that resumed it after a retry, or holds its merge
    lease_expires_at: float | None = None
    segment_count: int = 0  # 0: not split
    segments_done: int = 0
    plan: SegmentPlan | None = None  # a split step's plan (its segments follow from it)
    retried_at: float | None = None
    error: str | None = None
    result_file: str | None = None
    max_attempts: int | None = None  # the budget, as the worker that split it or claimed the merge recorded it
    started_at: float | None = None
    finished_at: float | None = None
    timings: Mapping[str, float] = field(default_factory=dict)
    after: tuple[str, ...] | None = None  # None: an item made before graphs (the step before it in the list)
    queued_by: str | None = None

    @classmethod
    def parse(cls, name: str, item: Mapping[str, Any], job_status: JobStatus) -> StepRecord:
        return cls(
            name=name,
            state=StepState(item.get("state", StepState.PENDING)),
            job_status=job_status,
            attempts=int(item.get("attempts") or 0),
            failures=int(item.get("failures") or 0),
            worker_id=item.get("worker_id"),
            message_id=item.get("message_id"),
            carrier=item.get("carrier"),
            lease_expires_at=_float(item.get("lease_expires_at")),
            segment_count=int(item.get("segment_count") or 0),
            segments_done=int(item.get("segments_done") or 0),
            plan=parse_plan(item.get("plan")) if item.get("segment_count") else None,
            retried_at=_float(item.get("retried_at")),
            error=item.get("error"),
            result_file=item.get("result_file"),
            max_attempts=_int(item.get("max_attempts")),
            started_at=_float(item.get("started_at")),
            finished_at=_float(item.get("finished_at")),
            timings=dict(item.get("timings") or {}),
            after=None if item.get("after") is None else tuple(item["after"]),
            queued_by=item.get("queued_by"),
        )

    @property
    def split(self) -> bool:
        return self.segment_count > 0

    @property
    def every_segment_done(self) -> bool:
        return self.split and self.segments_done == self.segment_count

    @property
    def finished(self) -> bool:
        """The step done or failed, or its job over: nothing moves it but gpupipe retry."""
        return self.state in (StepState.DONE, StepState.FAILED) or self.job_status in (JobStatus.SUCCEEDED, JobStatus.FAILED)

    @property
    def phase(self) -> Phase:
        if self.state == StepState.WAITING:
            return Phase.WAITING
        if self.state == StepState.DONE:
            return Phase.SUCCEEDED
        if self.state == StepState.FAILED:
            return Phase.FAILED
        if self.state == StepState.PENDING:
            return Phase.SPLIT_PENDING if self.split else Phase.PENDING
        if not self.split:
            return Phase.RUNNING
        if self.worker_id is not None:
            return Phase.MERGING
        return Phase.WAITING_TO_MERGE if self.every_segment_done else Phase.SPLIT

    def live_lease(self, now: float) -> bool:
        return self.worker_id is not None and self.lease_expires_at is not None and self.lease_expires_at >= now

    def running_under(self, worker_id: str, attempt: int) -> bool:
        """Running under this worker's claim of this attempt (``guards.holds_claim``, read from a record)."""
        return self.state == StepState.RUNNING and self.worker_id == worker_id and self.attempts == attempt

    @property
    def budget_left(self) -> bool:
        """Whether one more failure leaves the step's budget unspent (known once a merge was claimed)."""
        return self.max_attempts is not None and self.failures + 1 < self.max_attempts

    @property
    def progress(self) -> tuple[int, int] | None:
        """(segments done, segments planned) of a split step, or None when it was not split."""
        return (self.segments_done, self.segment_count) if self.split else None


@dataclass(frozen=True)
class SegmentRecord:
    """One segment's own item (or the absence of one: pending, no message known), as every decision reads it."""

    index: int
    state: StepState = StepState.PENDING
    attempts: int = 0
    failures: int = 0
    worker_id: str | None = None
    message_id: str | None = None
    lease_expires_at: float | None = None
    retried_at: float | None = None
    result_file: str | None = None
    error: str | None = None
    timings: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, index: int, item: Mapping[str, Any] | None) -> SegmentRecord:
        item = item or {}
        return cls(
            index=index,
            state=StepState(item.get("state", StepState.PENDING)),
            attempts=int(item.get("attempts") or 0),
            failures=int(item.get("failures") or 0),
            worker_id=item.get("worker_id"),
            message_id=item.get("message_id"),
            lease_expires_at=_float(item.get("lease_expires_at")),
            retried_at=_float(item.get("retried_at")),
            result_file=item.get("result_file"),
            error=item.get("error"),
            timings=dict(item.get("timings") or {}),
        )

    @classmethod
    def parse_item(cls, item: Mapping[str, Any]) -> SegmentRecord:
        """A segment item read from the table (its index is in it)."""
        return cls.parse(int(item["index"]), item)

    @property
    def phase(self) -> SegmentPhase:
        if self.state == StepState.DONE:
            return SegmentPhase.DONE
        if self.state == StepState.FAILED:
            return SegmentPhase.FAILED
        if self.state == StepState.RUNNING:
            return SegmentPhase.RUNNING
        return SegmentPhase.QUEUED if self.message_id else SegmentPhase.UNSENT

    def live_lease(self, now: float) -> bool:
        return self.state == StepState.RUNNING and self.lease_expires_at is not None and self.lease_expires_at >= now

    def held_by(self, worker_id: str, attempt: int) -> bool:
        return self.worker_id == worker_id and self.attempts == attempt


def segment_records(count: int, found: Mapping[int, SegmentRecord]) -> list[SegmentRecord]:
    """Every segment of a split step of ``count`` segments: those read (``JobStore.get_segments``), the rest absent
    (pending, no message known)."""
    return [found.get(index) or SegmentRecord(index) for index in range(count)]


@dataclass(frozen=True)
class JobRecord:
    """A job item: the object, the job's status and its steps' records."""

    job_id: str
    bucket: str
    key: str
    version: str
    step_names: tuple[str, ...]
    steps: Mapping[str, StepRecord]
    status: JobStatus
    versioned: bool = False
    size: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    expires_at: int = 0
    announced_at: float | None = None

    @classmethod
    def parse(cls, item: Mapping[str, Any]) -> JobRecord:
        status = JobStatus(item.get("status", JobStatus.PENDING))
        steps = item.get("steps") or {}
        return cls(
            job_id=item[KEY],
            bucket=item["bucket"],
            key=item["key"],
            version=item["version"],
            step_names=tuple(item["step_names"]),
            steps={name: StepRecord.parse(name, steps.get(name) or {}, status) for name in item["step_names"]},
            status=status,
            versioned=bool(item.get("versioned", False)),
            size=int(item.get("size") or 0),
            created_at=float(item.get("created_at") or 0),
            updated_at=float(item.get("updated_at") or 0),
            expires_at=int(item.get("expires_at") or 0),
            announced_at=_float(item.get("announced_at")),
        )

    @property
    def obj(self) -> ObjectRef:
        return ObjectRef(self.bucket, self.key, self.version, self.size, self.versioned)

    def step(self, name: str) -> StepRecord | None:
        return self.steps.get(name)

    @property
    def ended(self) -> bool:
        return self.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)

    @property
    def graph_recorded(self) -> bool:
        """Whether the item records its steps' ``after`` (items made before graphs ran their steps as a chain)."""
        return all(step.after is not None for step in self.steps.values())

    @property
    def graph(self) -> Graph:
        if not self.graph_recorded:
            return Graph.chain(self.step_names)
        return Graph.of([(name, self.steps[name].after) for name in self.step_names])

    def states(self, *states: StepState) -> tuple[str, ...]:
        """The steps in any of ``states``, in list order."""
        return tuple(name for name in self.step_names if self.steps[name].state in states)


def is_job_item(item: Mapping[str, Any]) -> bool:
    """A job's item, not a segment's (both live in the jobs table)."""
    return "step_names" in item


def parse_job(item: Mapping[str, Any] | None) -> JobRecord | None:
    """The job of an item read from the table (None: no item, or a segment's)."""
    return None if item is None or not is_job_item(item) else JobRecord.parse(item)


def job_from_image(image: Mapping[str, Any] | None) -> JobRecord | None:
    """The job of a stream record's image, as Powertools deserialises it (numbers as Decimals); None for a segment's item."""
    return parse_job(from_dynamo(image)) if image else None


# --- items and updates, serialised ---------------------------------------------------------------------------------


def new_job_item(obj: ObjectRef, steps: Graph | Sequence[str], now: float, ttl_days: int = DEFAULT_TTL_DAYS) -> dict[str, Any]:
    """The item of a new job: its roots pending (queued), every other step waiting on the steps it runs after (a list
    of names is a chain); each step records its ``after``."""
    graph = steps if isinstance(steps, Graph) else Graph.chain(steps)
    step_names = graph.order
    return {
        KEY: obj.job_id,
        "bucket": obj.bucket,
        "key": obj.key,
        "version": obj.version,
        "versioned": obj.versioned,
        "size": obj.size,
        "step_names": list(step_names),
        "steps": {
            name: {
                "state": (StepState.WAITING if graph.parents[name] else StepState.PENDING).value,
                "attempts": 0,
                "failures": 0,
                "after": list(graph.parents[name]),
            }
            for name in step_names
        },
        "status": JobStatus.PENDING.value,
        "created_at": now,
        "updated_at": now,
        "expires_at": int(now + ttl_days * 86400),
    }


def claimed_job_item(obj: ObjectRef, step: str, worker_id: str, message_id: str, now: float, lease_seconds: float) -> dict[str, Any]:
    """The item ``create_job`` then ``claim`` (pending -> running, attempt 1) leave for a one-step job."""
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
    return item


def plan_item(plan: SegmentPlan) -> dict[str, Any]:
    """A split's parameters as the step records them (a bounded amount, whatever the segment count)."""
    return {
        "fps": plan.timeline.fps,
        "frame_count": plan.timeline.frame_count,
        "sample_step": plan.timeline.sample_step,
        "limit_frame": plan.timeline.limit_frame,
        "segment_seconds": plan.segment_seconds,
    }


def parse_plan(item: Mapping[str, Any] | None) -> SegmentPlan | None:
    if not item:
        return None
    limit = item.get("limit_frame")
    timeline = VideoTimeline(float(item["fps"]), int(item["frame_count"]), int(item["sample_step"]), None if limit is None else int(limit))
    return SegmentPlan(timeline, float(item["segment_seconds"]))


def segment_identity(job: JobRecord | None, job_id: str, step: str, index: int) -> Update:
    """What every write that may make a segment's item also sets: whose it is, and its TTL (its job's)."""
    return Update().set_all(
        {
            SEGMENT.kind: Value("kind", SEGMENT_KIND),
            SEGMENT.parent_job: Value("parent", job_id),
            SEGMENT.step: Value("seg_step", step),
            SEGMENT.index: Value("seg_index", index),
            SEGMENT.expires_at: Value("expires", job.expires_at if job is not None else 0),
        }
    )


def step_summary(step: StepRecord) -> dict[str, Any]:
    """A step's record as the job's end announcement carries it."""
    summary: dict[str, Any] = {"state": step.state.value, "attempts": step.attempts, "failures": step.failures}
    optional = {
        "error": step.error,
        "result_file": step.result_file,
        "started_at": step.started_at,
        "finished_at": step.finished_at,
        "segment_count": step.segment_count or None,
        "segments_done": step.segments_done if step.split else None,
        "timings": dict(step.timings) or None,
    }
    return summary | {name: value for name, value in optional.items() if value is not None}
