"""Consistent reads of job and segment items, as records."""

from __future__ import annotations

from collections.abc import Iterator

from pipeline_core.dynamo.table import Table
from pipeline_core.records import JobRecord, SegmentRecord, job_key, parse_job, segment_key


class Reads:
    def __init__(self, table: Table):
        self.table = table

    def job(self, job_id: str) -> JobRecord | None:
        return parse_job(self.table.get(job_key(job_id)))

    def segment(self, job_id: str, step: str, index: int) -> SegmentRecord | None:
        """A segment's own item (None while nothing was recorded for it: pending, no message known)."""
        item = self.table.get(segment_key(job_id, step, index))
        return None if item is None else SegmentRecord.parse(index, item)

    def segments(self, job_id: str, step: str, count: int) -> dict[int, SegmentRecord]:
        """The segments ``0 .. count-1`` of a split step that have an item, by index (consistent reads, batched)."""
        items = self.table.batch_get([segment_key(job_id, step, index) for index in range(count)])
        records = (SegmentRecord.parse_item(item) for item in items)
        return {record.index: record for record in records}

    def every_job(self) -> Iterator[JobRecord]:
        """Every job item, by a scan of the whole table (segment items are read and skipped)."""
        for item in self.table.scan():
            job = parse_job(item)
            if job is not None:
                yield job
