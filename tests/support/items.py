"""The stored items themselves, for tests that check what the job store wrote (production code reads records)."""

from __future__ import annotations

from typing import Any

from pipeline_core.jobstore import JobStore
from pipeline_core.records import job_key, segment_key


def raw_job(store: JobStore, job_id: str) -> dict[str, Any] | None:
    return store.table.get(job_key(job_id))


def raw_segment(store: JobStore, job_id: str, step: str, index: int) -> dict[str, Any] | None:
    return store.table.get(segment_key(job_id, step, index))


def raw_segments(store: JobStore, job_id: str, step: str, count: int) -> dict[int, dict[str, Any]]:
    return {int(item["index"]): item for item in store.table.batch_get([segment_key(job_id, step, i) for i in range(count)])}
