"""Pure decisions and the DynamoDB guards that make the same rule atomic agree, on every phase a record can be in."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pipeline_core.dynamo.expressions import Update, Value
from pipeline_core.dynamo.table import Table, Write, to_dynamo
from pipeline_core.protocol.decisions import may_take_over, segment_reset_on_retry
from pipeline_core.protocol.guards import lease_expired, no_item, not_done_nor_held
from pipeline_core.protocol.phases import SegmentPhase
from pipeline_core.records import SEGMENT, SegmentRecord, segment_key
from tests.support.protocol_model import dynamodb_table

pytestmark = pytest.mark.integration

NOW = 1000.0
KEY = segment_key("0" * 32, "detect", 0)

# Every segment phase, and the lease boundaries the guards compare against (``>=`` now: live).
ITEMS: dict[str, dict[str, Any] | None] = {
    "unsent, no item": None,
    "unsent, pending with no message": {"state": "pending"},
    "queued": {"state": "pending", "message_id": "m1"},
    "running, live lease": {"state": "running", "worker_id": "w1", "message_id": "m1", "lease_expires_at": NOW + 30},
    "running, lease ends now": {"state": "running", "worker_id": "w1", "message_id": "m1", "lease_expires_at": NOW},
    "running, lease run out": {"state": "running", "worker_id": "w1", "message_id": "m1", "lease_expires_at": NOW - 1},
    "done": {"state": "done", "result_file": "s3://b/k"},
    "failed": {"state": "failed", "error": "PermanentError: corrupt"},
}


@pytest.fixture
def table() -> Iterator[Table]:
    with dynamodb_table() as resource:
        yield Table(resource)


def _applies(table: Table, item: dict[str, Any] | None, condition: Any) -> bool:
    if item is not None:
        table.resource.put_item(Item=to_dynamo({**KEY, "index": 0, **item}))
    return table.update_if(Write(KEY, Update().set(SEGMENT.retried_at, Value("now", NOW)), condition))


def test_every_segment_phase_is_covered() -> None:
    assert {SegmentRecord.parse(0, item).phase for item in ITEMS.values()} == set(SegmentPhase)


@pytest.mark.parametrize("case", ITEMS)
def test_segment_reset_on_retry_and_not_done_nor_held_agree(table: Table, case: str) -> None:
    item = ITEMS[case]
    pure = segment_reset_on_retry(SegmentRecord.parse(0, item), NOW)
    assert _applies(table, item, no_item() | not_done_nor_held(SEGMENT, NOW)) == pure, case


@pytest.mark.parametrize("case", ITEMS)
def test_may_take_over_and_lease_expired_agree(table: Table, case: str) -> None:
    item = ITEMS[case]
    pure = may_take_over(SegmentRecord.parse(0, item), NOW)
    assert _applies(table, item, lease_expired(SEGMENT, NOW)) == pure, case
