"""AWS limits moto does not enforce, checked at the largest plan: a job item under DynamoDB's 400 KB, the router's SNS
message under 256 KB, and a segment's item (what each segment write costs) small; none grows with the segment count.

The DynamoDB item size is computed by AWS's rules (docs: "Item sizes and formats"): each attribute name's UTF-8 bytes
plus its value: a string's UTF-8 bytes, a number about 1 byte per two significant digits plus 1, a boolean or null 1,
and a map or list 3 bytes plus 1 per element plus its elements.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from pipeline_core.dynamo.table import to_dynamo
from pipeline_core.graph import Graph
from pipeline_core.jobs import ObjectRef
from pipeline_core.jobstore import JobStore
from pipeline_core.records import segment_item_id
from pipeline_core.segment_plan import MAX_SEGMENTS, SegmentPlan, VideoTimeline
from tests.support.aws import StepStack
from tests.support.items import raw_job, raw_segment

pytestmark = pytest.mark.integration

DYNAMODB_ITEM_LIMIT = 400 * 1024
SNS_MESSAGE_LIMIT = 256 * 1024
LONGEST_KEY = "uploads/" + "k" * (1024 - len("uploads/") - len("/x" * 0) - 40)  # a key near S3's limit, results under it


def number_size(value: Decimal | int | float) -> int:
    digits = Decimal(str(value)).normalize().as_tuple().digits
    significant = len(str(int("".join(map(str, digits)) or "0")).rstrip("0")) or 1
    return (significant + 1) // 2 + 1


def value_size(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, int | float | Decimal):
        return number_size(value)
    if isinstance(value, dict):
        return 3 + sum(1 + len(str(k).encode()) + value_size(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return 3 + sum(1 + value_size(v) for v in value)
    raise TypeError(type(value))


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def test_the_size_rules_match_awss_examples() -> None:
    assert item_size({"a": "bcd"}) == 4 and item_size({"n": 12345}) == 1 + 4 and item_size({"m": {"x": 1}}) == 1 + 3 + 1 + 1 + 2


def _largest_job(stack: StepStack, steps: int) -> tuple[JobStore, ObjectRef, dict[str, Any]]:
    """Every step of a job split at MAX_SEGMENTS, each segment done (its count on the job item), the merges held."""
    store = JobStore(stack.table)
    obj = ObjectRef(stack.bucket, LONGEST_KEY, "v" * 32, 10**12, versioned=True)
    names = [f"step-{i:02d}-{'s' * 40}" for i in range(steps)]
    assert store.create_job(obj, Graph.of([(name, ()) for name in names]), 1000.0)  # parallel: every step split at once
    plan = SegmentPlan(VideoTimeline(29.97, 30 * 3600 * 24 * 30, 7, None), 60)
    assert plan.count == MAX_SEGMENTS
    for name in names:
        store.splits.record_split(store.claims.claim(obj.job_id, name, "w" * 64, "m" * 100, 1000.0, 60), plan, 1001.0)
        for index in (0, MAX_SEGMENTS - 1):  # a segment's writes land on its own item and the step's counter
            claim = store.claims.claim(obj.job_id, name, "w" * 64, "m" * 100, 1002.0, 60, segment=index)
            store.splits.mark_segment_done(
                claim, 1003.0, "s3://" + "b" * 63 + "/" + "r" * 1024, {"download": 1.5, "process": 60.25, "total": 62.0}
            )
    return store, obj, raw_job(store, obj.job_id) or {}


def test_the_largest_plans_job_item_and_sns_message_are_bounded_and_do_not_grow_with_the_segment_count(
    stack: StepStack, capsys: pytest.CaptureFixture[str]
) -> None:
    store, obj, job = _largest_job(stack, steps=3)
    size = item_size(to_dynamo(job))
    # The router's announcement: the job's fields and its steps (stream_router.app.finish).
    message = json.dumps(
        {"job_id": job["job_id"], "key": job["key"], "status": "succeeded", "reason": "", "bucket": job["bucket"], "steps": job["steps"]},
        default=str,
    )
    segment = raw_segment(store, obj.job_id, job["step_names"][0], MAX_SEGMENTS - 1) or {}
    segment_size = item_size(to_dynamo(segment))
    with capsys.disabled():
        print(
            f"\nlargest plan: 3 steps x {MAX_SEGMENTS} segments, key {len(obj.key)} bytes: job item {size} bytes "
            f"(limit {DYNAMODB_ITEM_LIMIT}), SNS message {len(message.encode())} bytes (limit {SNS_MESSAGE_LIMIT}), "
            f"a segment's item {segment_size} bytes"
        )
    assert size < DYNAMODB_ITEM_LIMIT / 40, size  # about 1 % of the limit: a few KB, whatever the segment count
    assert len(message.encode()) < SNS_MESSAGE_LIMIT / 40
    assert segment_size < 2 * 1024 and segment["job_id"] == segment_item_id(obj.job_id, job["step_names"][0], MAX_SEGMENTS - 1)
    assert "segments" not in json.dumps(job["steps"]).replace("segments_done", "")  # no per-segment record on the job


def test_the_job_items_size_is_the_same_for_two_segments_and_for_max_segments(stack: StepStack) -> None:
    store = JobStore(stack.table)
    sizes = []
    for minutes in (2, MAX_SEGMENTS):
        obj = ObjectRef(stack.bucket, f"uploads/{minutes}.mp4", "v1")
        store.create_job(obj, ["people"], 1000.0)
        store.splits.record_split(
            store.claims.claim(obj.job_id, "people", "w", "m", 1000.0, 60),
            SegmentPlan(VideoTimeline(30, 30 * 60 * minutes, 30), 60),
            1001.0,
        )
        for index in range(2):
            store.splits.mark_segment_done(
                store.claims.claim(obj.job_id, "people", "w", "m", 1002.0, 60, segment=index), 1003.0, "s3://b/r", {}
            )
        job = raw_job(store, obj.job_id) or {}
        job["key"] = "uploads/x.mp4"
        sizes.append(
            item_size(to_dynamo({k: v for k, v in job.items() if k != "job_id"})) - value_size(job["steps"]["people"]["segment_count"])
        )
    assert sizes[0] == sizes[1]
