"""The worker loop: receive, hand each message's items to the step lifecycle, settle the message; survive AWS.

What lives here and nowhere else:

- **Concurrency**: up to ``CONCURRENCY`` messages in flight, each handled in its own thread (download,
  process, upload and commit of one overlap with the others'); the loop receives up to ten at a time as
  capacity frees, and one keepalive holds them all.
- **Batched calls**: a receive costs the same for one message as for ten, so under a backlog the loop receives
  ahead: when a handler is free and no received message waits, it asks for as many as the free handlers take,
  plus ``CONCURRENCY`` more (at most ten a call) when the previous receive came back full (the queue had more
  than was asked: other tasks have work of their own). A handler that frees starts the next waiting one at
  once. So at most twice ``CONCURRENCY`` messages are held, every one by the keepalive from its receive, and
  under a backlog one receive serves about ten files; with the queue nearly empty nothing is taken ahead, so
  two messages never queue in one task while another task idles. Settled messages are deleted ten to a call (``worker.deletes``), and the
  keepalive changes visibilities ten to a call.
- **Receiving** with a long poll, retried with capped exponential backoff when SQS errors
  (botocore's adaptive retries come first; see ``worker.main``).
- **Settling** a message once its items are settled (``messages.settle``): delete it (in the next batch), requeue it
  (a fresh copy carrying the same origin id, then delete this one), or leave it to SQS.
  Requeueing keeps retries, postponements and shutdown hand-backs from using up the receives that
  the queue counts towards its dead-letter queue.
- **Segments in flight**: at most ``SEGMENTS_IN_FLIGHT`` segment messages at once, however many
  messages ``CONCURRENCY`` allows: segments of one long video are work for several tasks' GPUs, and a
  worker that took every one it received would hold them while the tasks the scaler started for them
  sit idle. At the limit the worker receives nothing until a segment finishes; a segment message past
  the limit in one receive is handed on untouched, as a fresh copy (so it uses up none of the receives
  the dead-letter queue counts).
- **Shutdown**: on SIGTERM no new message is taken; each one in progress gets the grace period, then
  is handed back; a message received while stopping is requeued untouched.
- **Survival**: no AWS error and no bad message ends the process. A message whose handling raised is
  left to come back after its visibility timeout. The process exits non-zero only for a broken
  configuration at start-up; after a step timed out it exits 0 so that ECS replaces the task.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline_core.bodies import InvalidMessage, parse_body
from pipeline_core.jobs import ORIGIN_ATTRIBUTE, origin_id
from pipeline_core.jobstore import JobStore
from worker import health
from worker.config import WorkerConfig
from worker.deletes import Deletes, delete_window
from worker.keepalive import Held, Keepalive, TaskProtection, error_code
from worker.lifecycle import Abandoned, StepRunner
from worker.messages import settle
from worker.processing import Processor

log = logging.getLogger("worker")

SQS_RECEIVE_MAX = 10  # MaxNumberOfMessages: SQS's limit


def origin(message: dict[str, Any]) -> str:
    """The id of the chain of copies this message belongs to: the claim records it, so a copy is 'this message'."""
    return origin_id(message["MessageId"], message.get("MessageAttributes"))


class Worker:
    def __init__(
        self,
        config: WorkerConfig,
        *,
        sqs: Any,
        s3: Any,
        store: JobStore,
        processor: Processor,
        stop: threading.Event,
        protection: TaskProtection,
    ):
        self.config, self.sqs, self.stop, self.protection = config, sqs, stop, protection
        self.processor = processor
        self.steps = StepRunner(config, s3=s3, store=store, processor=processor, stop=stop, sqs=sqs)
        self.keepalive = Keepalive(sqs, config.queue_url, store, config.visibility_timeout, config.heartbeat_seconds, protection)
        self.deletes = Deletes(sqs, config.queue_url, delete_window(config.visibility_timeout))
        self._failures = 0  # consecutive failed receives, for the backoff
        self._backlog = False  # the last receive came back full: receive ahead
        self._in_flight = 0
        self._segments = 0  # segment messages in flight, at most config.segments_in_flight
        self._capacity = threading.Condition()

    def run(self) -> None:
        log.info(
            "worker started",
            extra={"step": self.config.step_name, "processor": self.processor.name, "concurrency": self.config.concurrency},
        )
        self.keepalive.start()
        self.deletes.start()
        pool = ThreadPoolExecutor(max_workers=self.config.concurrency, thread_name_prefix="message")
        waiting: deque[tuple[dict[str, Any], Held]] = deque()  # received ahead, held, not started
        try:
            while not self._stopping():
                health.touch()
                free = self._wait_for_capacity()
                if not free:
                    continue
                if not waiting:
                    asked = min(SQS_RECEIVE_MAX, free + (self.config.concurrency if self._backlog else 0))
                    messages = self._receive(asked)
                    received_at = time.time()
                    self._backlog = len(messages) >= asked
                    if not messages:
                        if not self._in_flight:
                            self.protection.set(False)
                        continue
                    self.protection.set(True)
                    waiting.extend((message, self.hold(message, received_at)) for message in messages)
                while waiting and free and not self._stopping():
                    message, held = waiting.popleft()
                    with self._capacity:
                        self._in_flight += 1
                    free -= 1
                    pool.submit(self._handle_safely, message, held)
        finally:
            while waiting:  # received ahead, never started: handed on untouched
                message, held = waiting.popleft()
                self.keepalive.drop(held)
                self._requeue(message, 0, "received while stopping")
            pool.shutdown(wait=True)  # each message in flight finishes, or is handed back within the grace period
            self.deletes.close()  # the settled messages' deletes still waiting for their batch
            self.keepalive.close()
            self.protection.set(False)
        if self.steps.hung.is_set():
            log.error("a processor did not return within the step timeout; exiting so that the task is replaced")
        log.info("worker stopped", extra={"step": self.config.step_name})

    def _stopping(self) -> bool:
        return self.stop.is_set() or self.steps.hung.is_set()

    def _wait_for_capacity(self) -> int:
        """Block until a handler is free and there is room for a segment (or stopping); return how many handlers are free.

        At the segment limit nothing is received: the segments left on the queue are for other tasks, and
        this one's GPU is busy with its own.
        """
        with self._capacity:
            while (self._in_flight >= self.config.concurrency or self._segments >= self.config.segments_in_flight) and not self._stopping():
                self._capacity.wait(0.5)
            return 0 if self._stopping() else self.config.concurrency - self._in_flight

    # --- receiving -----------------------------------------------------------------------------------

    def _receive(self, count: int) -> list[dict[str, Any]]:
        try:
            messages = self.sqs.receive_message(
                QueueUrl=self.config.queue_url,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=self.config.wait_time_seconds,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
                MessageAttributeNames=[ORIGIN_ATTRIBUTE],
            ).get("Messages", [])
        except (ClientError, BotoCoreError) as error:
            self._failures += 1
            delay = min(30.0, 0.5 * 2 ** min(self._failures, 6)) * random.uniform(0.5, 1.0)  # noqa: S311 - jitter
            log.warning("receive failed; backing off", extra={"error": str(error), "code": error_code(error), "delay": round(delay, 2)})
            self.stop.wait(delay)
            return []
        self._failures = 0
        return messages

    # --- one message -----------------------------------------------------------------------------------

    def hold(self, message: dict[str, Any], received_at: float) -> Held:
        """Hold ``message`` (its visibility, and the claims it works under) from its receive until it is settled."""
        return self.keepalive.hold(origin(message), message["ReceiptHandle"], received_at)

    def _handle_safely(self, message: dict[str, Any], held: Held) -> None:
        try:
            self.handle(message, held)
        except Abandoned:
            pass  # handed back by handle(); the loop sees the stop flag
        except Exception as error:
            log.error(
                "message handling failed; it comes back after its visibility timeout",
                extra={"message_id": message["MessageId"], "error": str(error), "code": error_code(error)},
                exc_info=True,
            )
        finally:
            self.keepalive.drop(held)
            with self._capacity:
                self._in_flight -= 1
                self._capacity.notify_all()

    def handle(self, message: dict[str, Any], held: Held) -> None:
        """Run every item in one message while the keepalive holds it (``held``, from its receive), then settle it."""
        receive_count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        try:
            parsed = parse_body(message["Body"], self.config.step_name)
        except InvalidMessage as error:
            log.error(
                "invalid message left for the DLQ",
                extra={"message_id": message["MessageId"], "reason": str(error), "receive_count": receive_count},
            )
            self.keepalive.drop(held)
            self._change_visibility(message, self.config.retry_delay_seconds)
            return
        if parsed.is_test_event:
            log.info("s3 test event deleted", extra={"message_id": message["MessageId"]})
            self.keepalive.drop(held)
            self._delete(message)
            return
        segments = sum(item.segment is not None for item in parsed.items)
        if not self._take_segments(segments):
            self.keepalive.drop(held)
            self._requeue(message, 0, "segments in flight at the limit: handed on to a task with room")
            return
        try:
            results = [self.steps.run(item, held) for item in parsed.items]
        except Abandoned:
            self._requeue(message, 0, "handed back on shutdown")
            raise
        finally:
            self.keepalive.drop(held)
            self._take_segments(-segments)
        action = settle(results)
        if action.delete:
            self._delete(message)
        elif action.requeue_delay is not None:
            self._requeue(message, action.requeue_delay, "to run again")

    def _take_segments(self, count: int) -> bool:
        """Count ``count`` more segment messages in flight (negative: fewer); False, counting nothing, past the limit."""
        with self._capacity:
            if count > 0 and self._segments + count > self.config.segments_in_flight:
                return False
            self._segments += count
            return True

    # --- settling ---------------------------------------------------------------------------------------

    def _delete(self, message: dict[str, Any]) -> None:
        self.deletes.add(message)

    def _change_visibility(self, message: dict[str, Any], seconds: int) -> None:
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.config.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=seconds
            )
        except (ClientError, BotoCoreError) as error:
            log.warning("visibility change failed", extra={"message_id": message["MessageId"], "code": error_code(error)})

    def _requeue(self, message: dict[str, Any], delay: int, why: str) -> None:
        """Send a fresh copy (same body, same origin), then delete this one; if the send fails, make this one visible."""
        try:
            self.sqs.send_message(
                QueueUrl=self.config.queue_url,
                MessageBody=message["Body"],
                DelaySeconds=delay,
                MessageAttributes={ORIGIN_ATTRIBUTE: {"DataType": "String", "StringValue": origin(message)}},
            )
        except (ClientError, BotoCoreError) as error:
            log.warning(
                "requeue failed; the message is made visible instead", extra={"message_id": message["MessageId"], "code": error_code(error)}
            )
            self._change_visibility(message, delay)
            return
        self._delete(message)
        log.info("message requeued", extra={"message_id": message["MessageId"], "origin": origin(message), "delay": delay, "why": why})
