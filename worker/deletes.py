"""Deleting settled messages in batches: one ``DeleteMessageBatch`` call for up to ten of them.

A message is handed here only once it is settled (its step's ``mark_done`` committed, or its fresh copy
sent), so a batch never deletes a message whose work could still be lost. The thread sends a batch when
ten are waiting or the oldest has waited ``window`` seconds; ``close`` sends what is left. The window is
short against the visibility timeout (``delete_window``), so a message waiting here does not come back
meanwhile; if it did (or the task was killed first), it would be dropped as finished.

SQS answers a batch entry by entry: each entry in ``Failed`` is handled alone. One whose receipt handle
is gone had already left the queue (deleted, or moved to the dead-letter queue); any other comes back
after its visibility timeout and is dropped as finished by its claim's refusal, as a failed single
delete always did. A whole call that fails (after botocore's retries) is each of its entries failing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from worker.keepalive import GONE_CODES, error_code

log = logging.getLogger("worker")

SQS_BATCH = 10  # entries per DeleteMessageBatch: SQS's limit
DELETE_WINDOW_SECONDS = 2.0  # at most; at 5 files a second a batch then holds ten


def delete_window(visibility_timeout: float) -> float:
    """How long a settled message may wait for its batch: ``DELETE_WINDOW_SECONDS``, at most a tenth of the visibility."""
    return min(DELETE_WINDOW_SECONDS, visibility_timeout / 10)


@dataclass(frozen=True)
class Pending:
    message_id: str
    receipt_handle: str
    since: float


class Deletes:
    def __init__(self, sqs: Any, queue_url: str, window: float = DELETE_WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.sqs, self.queue_url, self.window, self.clock = sqs, queue_url, window, clock
        self._pending: list[Pending] = []
        self._changed = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="deletes", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, message: dict[str, Any]) -> None:
        """Delete ``message`` in the next batch (it is settled: nothing about it is left to do)."""
        with self._changed:
            self._pending.append(Pending(message["MessageId"], message["ReceiptHandle"], self.clock()))
            self._changed.notify_all()
        if not self._thread.is_alive():  # not started (or closed): nothing would send it later
            self.flush()

    def close(self) -> None:
        """Send every pending delete, then stop the thread."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self.flush()

    def flush(self) -> None:
        while True:
            with self._changed:
                batch, self._pending = self._pending[:SQS_BATCH], self._pending[SQS_BATCH:]
            if not batch:
                return
            self._send(batch)

    def _due(self) -> bool:
        return len(self._pending) >= SQS_BATCH or bool(self._pending and self.clock() - self._pending[0].since >= self.window)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._closing and not self._due():
                    timeout = self.window - (self.clock() - self._pending[0].since) if self._pending else None
                    self._changed.wait(timeout)
                if self._closing:
                    return
                batch, self._pending = self._pending[:SQS_BATCH], self._pending[SQS_BATCH:]
            self._send(batch)

    def _send(self, batch: list[Pending]) -> None:
        entries = {str(index): pending for index, pending in enumerate(batch)}
        try:
            response = self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": key, "ReceiptHandle": pending.receipt_handle} for key, pending in entries.items()],
            )
        except (ClientError, BotoCoreError) as error:
            for pending in batch:
                _not_deleted(pending, error_code(error), str(error))
            return
        for failure in response.get("Failed", []):
            failed = entries.get(str(failure.get("Id")))
            if failed is not None:
                _not_deleted(failed, str(failure.get("Code", "")), str(failure.get("Message", "")))


def _not_deleted(pending: Pending, code: str, why: str) -> None:
    gone = code in GONE_CODES
    log.log(
        logging.INFO if gone else logging.WARNING,
        "message not deleted" + ("; it had already left the queue" if gone else "; it comes back and is dropped as finished"),
        extra={"message_id": pending.message_id, "code": code, "error": why},
    )
