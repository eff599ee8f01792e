"""The job store: job and segment items in one DynamoDB table, every state change one conditional write.

``JobStore`` creates jobs, reads them as records, and moves a job's own status and announcement; its rooms make the
rest of the protocol's writes, each built from the named guards of ``protocol.guards`` that the transition table
(``protocol.table``) cites:

- ``claims``: a worker's claim of a step, a segment or a merge, and the holder's writes (``jobstore.claims``);
- ``splits``: a split's plan, its segments' messages and their fan-in (``jobstore.segments``);
- ``dead_letters``: what a dead-lettered message fails (``jobstore.deadletters``);
- ``retries``: ``gpupipe retry``, and ``--from`` a step (``jobstore.retry``);
- ``joins``: a step of a graph queued once its parents have all succeeded (``jobstore.joins``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline_core.dynamo.expressions import Update, Value
from pipeline_core.dynamo.table import ConditionFailed, Table, Write
from pipeline_core.graph import Graph
from pipeline_core.jobs import JobStatus, ObjectRef
from pipeline_core.jobstore.claims import Claims
from pipeline_core.jobstore.deadletters import DeadLetters
from pipeline_core.jobstore.joins import Joins
from pipeline_core.jobstore.reads import Reads
from pipeline_core.jobstore.retry import Retries
from pipeline_core.jobstore.segments import Splits
from pipeline_core.jobstore.updates import touched
from pipeline_core.protocol.guards import announcement_held, end_unannounced, job_unfinished, no_item
from pipeline_core.records import JOB, JobRecord, SegmentRecord, job_key, new_job_item


class JobStore:
    """Job items and segment items in one DynamoDB table (a boto3 ``Table`` resource, or a ``dynamo.table.Table``)."""

    def __init__(self, table: Any):
        self.table = table if isinstance(table, Table) else Table(table)
        self.reads = Reads(self.table)
        self.claims = Claims(self.table)
        self.splits = Splits(self.table, self.reads)
        self.dead_letters = DeadLetters(self.table)
        self.retries = Retries(self.table, self.reads)
        self.joins = Joins(self.table)

    def create_job(self, obj: ObjectRef, steps: Graph | Sequence[str], now: float) -> bool:
        """Put a new job (its roots queued, its other steps waiting; a list of names is a chain) unless one exists for
        the same object version. True when created."""
        try:
            self.table.put(new_job_item(obj, steps, now), no_item())
        except ConditionFailed:
            return False
        return True

    def get_job(self, job_id: str) -> JobRecord | None:
        return self.reads.job(job_id)

    def get_segment(self, job_id: str, step: str, index: int) -> SegmentRecord | None:
        return self.reads.segment(job_id, step, index)

    def get_segments(self, job_id: str, step: str, count: int) -> dict[int, SegmentRecord]:
        return self.reads.segments(job_id, step, count)

    def every_job(self) -> list[JobRecord]:
        """Every job, oldest first (a scan of the whole table)."""
        return sorted(self.reads.every_job(), key=lambda job: job.created_at)

    def set_status(self, job_id: str, status: JobStatus, now: float) -> bool:
        """Move a job to a final status unless it already has one. True when this call changed it."""
        return self.table.update_if(Write(job_key(job_id), Update().set(JOB.status, status) + touched(now), job_unfinished()))

    def claim_announcement(self, job_id: str, ended_at: float) -> bool:
        """Claim the right to announce the job's end recorded at ``ended_at`` (the item's ``updated_at`` in the stream
        image that finished it). True once per end: a replayed record, or an older end replayed after a newer one,
        gets False; a job that is retried and ends again gets True again."""
        update = Update().set(JOB.announced_at, Value("at", ended_at))
        return self.table.update_if(Write(job_key(job_id), update, end_unannounced(ended_at)))

    def release_announcement(self, job_id: str, ended_at: float) -> None:
        """Give back a claim whose announcement could not be sent, so the record's retry sends it."""
        self.table.update_if(Write(job_key(job_id), Update().remove(JOB.announced_at), announcement_held(ended_at)))
