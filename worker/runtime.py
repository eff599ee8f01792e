"""The worker loop: receive, claim, download, process, upload, mark done, delete.

In that order a crash at any point loses nothing and repeats at most the
unfinished step: the message is deleted only after the step is marked done,
and the result key is deterministic, so a repeat overwrites.
"""

from __future__ import annotations

import json
import logging
import math
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from pipeline_core.jobs import result_key, result_prefix
from pipeline_core.jobstore import Claim, ClaimLost, ClaimRefused, JobStore, Unclaimable
from worker import health
from worker.config import WorkerConfig
from worker.errors import PermanentError, Severity, classify, describe
from worker.keepalive import Heartbeat, TaskProtection
from worker.logs import Stopwatch
from worker.messages import InvalidMessage, ItemResult, Outcome, WorkItem, parse_body, settle
from worker.processors import Processor, StepContext

log = logging.getLogger("worker")

RESULT_SCHEMA_VERSION = "1"
_SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")
_CONTENT_TYPES = {".json": "application/json", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}


class Abandoned(Exception):
    """Stopping, and the current step did not finish within the grace period."""


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
        self.config = config
        self.sqs, self.s3, self.store = sqs, s3, store
        self.processor = processor
        self.stop = stop
        self.protection = protection
        self._claim: Claim | None = None

    # --- the loop -------------------------------------------------------------

    def run(self) -> None:
        log.info("worker started", extra={"step": self.config.step_name, "processor": self.processor.name})
        while not self.stop.is_set():
            health.touch()
            messages = self.sqs.receive_message(
                QueueUrl=self.config.queue_url,
                MaxNumberOfMessages=1,
                WaitTimeSeconds=self.config.wait_time_seconds,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            ).get("Messages", [])
            if not messages:
                self.protection.set(False)
                continue
            if self.stop.is_set():
                self._return_to_queue(messages[0])
                break
            self.protection.set(True)
            try:
                self.handle(messages[0])
            except Abandoned:
                break
        self.protection.set(False)
        log.info("worker stopped", extra={"step": self.config.step_name})

    def handle(self, message: dict[str, Any]) -> None:
        """Run every item in one message under one heartbeat, then delete or keep the message."""
        receive_count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        try:
            parsed = parse_body(message["Body"], self.config.step_name)
        except InvalidMessage as error:
            log.error(
                "invalid message left for the DLQ",
                extra={"message_id": message["MessageId"], "reason": str(error), "receive_count": receive_count},
            )
            self._change_visibility(message, self.config.retry_delay_seconds)
            return
        if parsed.is_test_event:
            log.info("s3 test event deleted", extra={"message_id": message["MessageId"]})
            self._delete(message)
            return
        with Heartbeat(
            self.sqs,
            self.config.queue_url,
            message["ReceiptHandle"],
            self.config.visibility_timeout,
            self.config.heartbeat_seconds,
            on_beat=self._extend_lease,
        ):
            try:
                results = [self.run_item(item, message, receive_count) for item in parsed.items]
            except Abandoned:
                self._return_to_queue(message)
                raise
        action = settle(results)
        if action.delete:
            self._delete(message)
        elif action.visibility is not None:
            self._change_visibility(message, action.visibility)

    # --- one step of one job ----------------------------------------------------

    def run_item(self, item: WorkItem, message: dict[str, Any], receive_count: int) -> ItemResult:
        fields = {"job_id": item.job_id, "key": item.obj.key, "step": item.step, "message_id": message["MessageId"]}
        if item.from_s3_event and self.store.create_job(item.obj, [item.step], time.time()):
            log.info("job created", extra=fields)
        try:
            claim = self.store.claim(
                item.job_id, item.step, self.config.worker_id, message["MessageId"], time.time(), self.config.visibility_timeout
            )
        except ClaimRefused as refused:
            return self._refused(refused, fields)
        fields["attempt"] = claim.attempt
        log.info("step claimed", extra=fields)
        self._claim = claim
        try:
            return self._run_claimed(claim, item, receive_count, fields)
        finally:
            self._claim = None

    def _run_claimed(self, claim: Claim, item: WorkItem, receive_count: int, fields: dict[str, Any]) -> ItemResult:
        started = time.perf_counter()
        try:
            result_file, timings = self._execute_within_grace(claim, item)
        except Abandoned:
            self.store.release(claim, time.time())
            log.warning("step released on shutdown", extra=fields)
            raise
        except Exception as error:  # noqa: BLE001 - every failure is classified, none is lost
            return self._failed(claim, error, receive_count, fields)
        timings["total"] = round(time.perf_counter() - started, 4)
        try:
            self.store.mark_done(claim, time.time(), result_file, timings)
        except ClaimLost:
            log.warning("claim lost before done; the new holder repeats the step", extra=fields)
            return ItemResult(Outcome.LOST)
        log.info("step done", extra={**fields, "outcome": Outcome.DONE.value, "result_file": result_file, "timings": timings})
        return ItemResult(Outcome.DONE)

    def _refused(self, refused: ClaimRefused, fields: dict[str, Any]) -> ItemResult:
        if refused.reason == Unclaimable.HELD_BY_THIS_MESSAGE:
            lease = float((refused.item or {}).get("steps", {}).get(fields["step"], {}).get("lease_expires_at", 0))
            delay = min(max(1, math.ceil(lease - time.time()) + 1), 43200)
            log.info("message redelivered while its step is held; postponed", extra={**fields, "delay": delay})
            return ItemResult(Outcome.POSTPONE, delay)
        log.info("step not claimed", extra={**fields, "outcome": Outcome.SKIPPED.value, "reason": refused.reason.value})
        return ItemResult(Outcome.SKIPPED)

    def _failed(self, claim: Claim, error: Exception, receive_count: int, fields: dict[str, Any]) -> ItemResult:
        reason = describe(error)
        severity = classify(error)
        final = receive_count >= self.config.max_receive_count
        try:
            if severity == Severity.PERMANENT:
                self.store.mark_failed(claim, time.time(), reason)
                outcome = ItemResult(Outcome.FAILED)
            elif final:
                self.store.mark_failed(claim, time.time(), f"gave up after {receive_count} attempts: {reason}")
                outcome = ItemResult(Outcome.GAVE_UP, 0)
            else:
                self.store.record_error(claim, time.time(), reason)
                outcome = ItemResult(Outcome.RETRY, self.config.retry_delay_seconds)
        except ClaimLost:
            return ItemResult(Outcome.LOST)
        level = logging.ERROR if outcome.outcome != Outcome.RETRY else logging.WARNING
        log.log(
            level,
            "step failed",
            extra={
                **fields,
                "outcome": outcome.outcome.value,
                "severity": severity.value,
                "reason": reason,
                "receive_count": receive_count,
            },
            exc_info=severity == Severity.TRANSIENT,
        )
        return outcome

    def _execute_within_grace(self, claim: Claim, item: WorkItem) -> tuple[str, dict[str, float]]:
        """Run the step in a thread; once stopping, wait at most the grace period for it."""
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = self._download_process_upload(claim, item)
            except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
                box["error"] = error

        thread = threading.Thread(target=target, name=f"step-{claim.job_id}", daemon=True)
        thread.start()
        deadline: float | None = None
        while thread.is_alive():
            thread.join(0.1)
            if self.stop.is_set() and thread.is_alive():
                deadline = deadline or time.monotonic() + self.config.grace_seconds
                if time.monotonic() >= deadline:
                    raise Abandoned(f"{claim.job_id}/{claim.step} did not finish within {self.config.grace_seconds}s")
        if "error" in box:
            raise box["error"]
        return box["value"]

    def _download_process_upload(self, claim: Claim, item: WorkItem) -> tuple[str, dict[str, float]]:
        watch = Stopwatch()
        bucket, key = item.obj.bucket, item.obj.key
        with tempfile.TemporaryDirectory(prefix="gpupipe-") as tmp:
            workdir = Path(tmp)
            suffix = Path(key).suffix.lower()
            input_path = workdir / ("input" + (suffix if _SAFE_SUFFIX.match(suffix) else ""))
            with watch.time("download"):
                head = self._head_input(bucket, key)
                self.s3.download_file(bucket, key, str(input_path))
            context = StepContext(claim.job_id, claim.step, bucket, key, item.obj.version, claim.attempt, workdir)
            with watch.time("process"):
                output = self.processor.process(input_path, context)
            document = {
                "schema_version": RESULT_SCHEMA_VERSION,
                "job_id": claim.job_id,
                "step": claim.step,
                "attempt": claim.attempt,
                "worker_id": claim.worker_id,
                "input": {
                    "bucket": bucket,
                    "key": key,
                    "version": item.obj.version,
                    "etag": head["ETag"].strip('"'),
                    "size": head["ContentLength"],
                },
                "processor": {"name": self.processor.name, "version": self.processor.version},
                "output": output.document,
                "files": sorted(output.files),
            }
            with watch.time("upload"):
                prefix = result_prefix(self.config.results_prefix, key, claim.step)
                for name, path in output.files.items():
                    self._upload(path.read_bytes(), prefix + name)
            document["timings"] = dict(watch.timings)  # the pictures' upload included; the JSON's own is in the job item
            with watch.time("upload_result"):
                target = result_key(self.config.results_prefix, key, claim.step)
                self._upload(json.dumps(document, ensure_ascii=False, indent=1).encode(), target)
        return f"s3://{self.config.results_bucket}/{target}", watch.timings

    def _head_input(self, bucket: str, key: str) -> dict[str, Any]:
        try:
            head = self.s3.head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise PermanentError(f"input s3://{bucket}/{key} no longer exists") from None
            raise
        if head["ContentLength"] > self.config.max_file_bytes:
            raise PermanentError(f"input is {head['ContentLength']} bytes, over the limit of {self.config.max_file_bytes}")
        return head

    def _upload(self, body: bytes, key: str) -> None:
        content_type = _CONTENT_TYPES.get(Path(key).suffix.lower(), "application/octet-stream")
        self.s3.put_object(Bucket=self.config.results_bucket, Key=key, Body=body, ContentType=content_type)

    # --- message and lease housekeeping -------------------------------------------

    def _extend_lease(self, until: float) -> None:
        claim = self._claim
        if claim is not None:
            self.store.extend_lease(claim, until)

    def _delete(self, message: dict[str, Any]) -> None:
        self.sqs.delete_message(QueueUrl=self.config.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def _change_visibility(self, message: dict[str, Any], seconds: int) -> None:
        self.sqs.change_message_visibility(
            QueueUrl=self.config.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=seconds
        )

    def _return_to_queue(self, message: dict[str, Any]) -> None:
        self._change_visibility(message, 0)
        log.info("message returned to the queue", extra={"message_id": message["MessageId"]})
