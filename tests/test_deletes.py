"""Deleting settled messages in batches (worker/deletes.py): ten to a call, each refused entry on its own."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from worker.deletes import DELETE_WINDOW_SECONDS, Deletes, delete_window

pytestmark = pytest.mark.unit


class RecordingSqs:
    """Answers DeleteMessageBatch as SQS does: entries whose receipt handle starts with ``refuse`` fail with ``code``."""

    def __init__(self, code: str = "InternalError"):
        self.code = code
        self.batches: list[list[str]] = []
        self.sent = threading.Event()

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        assert 1 <= len(Entries) <= 10, "SQS refuses an empty batch or one of more than ten"
        self.batches.append([entry["ReceiptHandle"] for entry in Entries])
        self.sent.set()
        failed = [entry for entry in Entries if entry["ReceiptHandle"].startswith("refuse")]
        return {
            "Successful": [{"Id": entry["Id"]} for entry in Entries if entry not in failed],
            "Failed": [{"Id": entry["Id"], "SenderFault": False, "Code": self.code, "Message": "no"} for entry in failed],
        }


def message(n: int, handle: str = "r") -> dict[str, str]:
    return {"MessageId": f"m{n}", "ReceiptHandle": f"{handle}{n}"}


def test_deletes_go_ten_to_a_call_and_every_one_is_sent_on_close() -> None:
    sqs = RecordingSqs()
    deletes = Deletes(sqs, "queue", window=60)
    deletes.start()
    for n in range(25):
        deletes.add(message(n))
    assert sqs.sent.wait(5), "ten waiting did not send a batch"
    deletes.close()  # the last five go now, not after the window
    assert [len(batch) for batch in sqs.batches] == [10, 10, 5]
    assert sorted(handle for batch in sqs.batches for handle in batch) == sorted(f"r{n}" for n in range(25))


def test_a_lone_delete_waits_no_longer_than_the_window() -> None:
    sqs = RecordingSqs()
    deletes = Deletes(sqs, "queue", window=0.05)
    deletes.start()
    deletes.add(message(1))
    assert sqs.sent.wait(5), "a single settled message was never deleted"
    deletes.close()
    assert sqs.batches == [["r1"]]


@pytest.mark.parametrize(
    ("code", "level", "event"),
    [
        ("ReceiptHandleIsInvalid", logging.INFO, "message not deleted; it had already left the queue"),
        ("InternalError", logging.WARNING, "message not deleted; it comes back and is dropped as finished"),
    ],
)
def test_each_refused_entry_is_reported_alone(caplog: pytest.LogCaptureFixture, code: str, level: int, event: str) -> None:
    sqs = RecordingSqs(code)
    deletes = Deletes(sqs, "queue")  # not started: each add is sent at once
    with caplog.at_level(logging.INFO, logger="worker"):
        deletes.add(message(1))
        deletes.add(message(2, handle="refuse"))
    reported = [record for record in caplog.records if record.getMessage().startswith("message not deleted")]
    assert [(record.levelno, record.getMessage(), record.message_id) for record in reported] == [(level, event, "m2")]  # type: ignore[attr-defined]


def test_the_window_is_short_against_the_visibility() -> None:
    assert delete_window(600) == DELETE_WINDOW_SECONDS
    assert delete_window(3) == pytest.approx(0.3)
