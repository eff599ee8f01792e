"""The lifecycle of one step of one job: claim, run bounded, fence, commit or fail, and say what to do with the message.

Guarantees, each kept here and nowhere else:

- **Claim**: a conditional update takes the step (pending, or running under an expired lease) and
  gives this attempt a number no other attempt has; refused claims say why (finished, duplicate,
  redelivered while held), and the message is settled accordingly.
- **Bounded**: the processor runs in a thread the lifecycle waits on until the step's timeout. A step
  past it fails as transient; since a thread cannot be stopped, the worker then exits after settling
  its messages, and ECS starts a fresh task. On shutdown the step gets the grace period, then is
  handed back (released, no failure counted).
- **Fenced**: outputs go to a location unique to the attempt, and every write checks that the claim is
  still held (the keepalive marks it lost when the lease was taken over). The conditional ``mark_done``
  that records the attempt's ``result_file`` is the commit.
- **Budget**: transient failures are counted in the job item (``failures``); the step fails with
  "gave up after N attempts" when they reach ``max_attempts``. Permanent failures fail it at once.
"""

from __future__ import annotations

import logging
import math
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pipeline_core.jobs import StepState
from pipeline_core.jobstore import Claim, ClaimLost, ClaimRefused, JobStore, Unclaimable
from worker.config import WorkerConfig
from worker.errors import Severity, classify, describe
from worker.keepalive import Held
from worker.logs import Stopwatch
from worker.messages import ItemResult, Outcome, WorkItem
from worker.processors import Processor, StepContext, StepOutput
from worker.storage import RESULT_SCHEMA_VERSION, AttemptOutputs, fetch_input

log = logging.getLogger("worker")

MAX_SQS_DELAY = 900  # DelaySeconds cap of SendMessage


class Abandoned(Exception):
    """Stopping, and the step did not finish within the grace period: it was handed back."""


class StepTimedOut(Exception):
    """The processor did not return within the step's timeout."""


class StepRunner:
    def __init__(self, config: WorkerConfig, *, s3: Any, store: JobStore, processor: Processor, stop: threading.Event):
        self.config, self.s3, self.store, self.processor, self.stop = config, s3, store, processor, stop
        self.hung = threading.Event()  # a processor thread did not return: the process must be replaced

    def run(self, item: WorkItem, held: Held) -> ItemResult:
        fields: dict[str, Any] = {"job_id": item.job_id, "key": item.obj.key, "step": item.step, "message_id": held.message_id}
        if item.from_s3_event and self.store.create_job(item.obj, [item.step], time.time()):
            log.info("job created", extra=fields)
        try:
            claim = self.store.claim(
                item.job_id, item.step, self.config.worker_id, held.message_id, time.time(), self.config.visibility_timeout
            )
        except ClaimRefused as refused:
            return self._refused(refused, fields)
        fields["attempt"] = claim.attempt
        log.info("step claimed", extra=fields)
        held.lost.clear()
        held.claim = claim
        try:
            return self._attempt(claim, item, held, fields)
        finally:
            held.claim = None

    # --- one attempt ---------------------------------------------------------------------------------

    def _attempt(self, claim: Claim, item: WorkItem, held: Held, fields: dict[str, Any]) -> ItemResult:
        started = time.perf_counter()
        watch = Stopwatch()
        outputs = AttemptOutputs(self.s3, self.config.results_bucket, self.config.results_prefix, item.obj, claim, held.lost)
        with tempfile.TemporaryDirectory(prefix="gpupipe-") as tmp:
            try:
                outputs.check_key_length()
                head, output = self._run_bounded(claim, item, Path(tmp), watch)
                if held.lost.is_set():
                    raise ClaimLost("the claim was taken over while the step ran")
                with watch.time("upload"):
                    outputs.put_files(output.files)
                result_file = outputs.put_result(self._document(claim, item, head, output, watch))
                watch.timings["total"] = round(time.perf_counter() - started, 4)
                self.store.mark_done(claim, time.time(), result_file, watch.timings)
            except Abandoned:
                self._hand_back(claim, fields)
                raise
            except ClaimLost:
                log.warning("claim lost; the new holder repeats the step and this attempt wrote nothing it records", extra=fields)
                return ItemResult(Outcome.LOST)
            except Exception as error:  # noqa: BLE001 - every failure is classified, none is lost
                return self._failed(claim, error, fields)
        log.info("step done", extra={**fields, "outcome": Outcome.DONE.value, "result_file": result_file, "timings": watch.timings})
        return ItemResult(Outcome.DONE)

    def _run_bounded(self, claim: Claim, item: WorkItem, workdir: Path, watch: Stopwatch) -> tuple[dict[str, Any], StepOutput]:
        """Download and process in a thread; wait for it until the step timeout, or the grace period once stopping."""
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = self._download_and_process(claim, item, workdir, watch)
            except BaseException as error:  # noqa: BLE001 - handed to the waiting thread
                box["error"] = error

        thread = threading.Thread(target=target, name=f"step-{claim.job_id[:8]}-{claim.attempt}", daemon=True)
        thread.start()
        deadline = time.monotonic() + self.config.step_timeout_seconds
        grace_deadline: float | None = None
        while thread.is_alive():
            thread.join(0.1)
            if not thread.is_alive():
                break
            if time.monotonic() >= deadline:
                self.hung.set()
                raise StepTimedOut(f"step timed out after {self.config.step_timeout_seconds:g} s")
            if self.stop.is_set():
                grace_deadline = grace_deadline or time.monotonic() + self.config.grace_seconds
                if time.monotonic() >= grace_deadline:
                    raise Abandoned(f"{claim.job_id}/{claim.step} did not finish within {self.config.grace_seconds:g} s of stopping")
        if "error" in box:
            raise box["error"]
        return box["value"]

    def _download_and_process(self, claim: Claim, item: WorkItem, workdir: Path, watch: Stopwatch) -> tuple[dict[str, Any], StepOutput]:
        suffix = Path(item.obj.key).suffix.lower()
        input_path = workdir / ("input" + (suffix if suffix[1:].isalnum() and len(suffix) <= 9 else ""))
        with watch.time("download"):
            head = fetch_input(self.s3, item.obj, input_path, self.config.max_file_bytes)
        context = StepContext(claim.job_id, claim.step, item.obj.bucket, item.obj.key, item.obj.version, claim.attempt, workdir)
        with watch.time("process"):
            output = self.processor.process(input_path, context)
        return head, output

    def _document(self, claim: Claim, item: WorkItem, head: dict[str, Any], output: StepOutput, watch: Stopwatch) -> dict[str, Any]:
        return {
            "schema_version": RESULT_SCHEMA_VERSION,
            "job_id": claim.job_id,
            "step": claim.step,
            "attempt": claim.attempt,
            "worker_id": claim.worker_id,
            "input": {
                "bucket": item.obj.bucket,
                "key": item.obj.key,
                "version": item.obj.version,
                "version_id": head.get("VersionId") if item.obj.versioned else None,
                "etag": head["ETag"].strip('"'),
                "size": head["ContentLength"],
            },
            "processor": {"name": self.processor.name, "version": self.processor.version},
            "output": output.document,
            "files": sorted(output.files),
            "timings": dict(watch.timings),  # the pictures' upload included; the document's own is in the job item
        }

    # --- endings ---------------------------------------------------------------------------------------

    def _refused(self, refused: ClaimRefused, fields: dict[str, Any]) -> ItemResult:
        step = (refused.item or {}).get("steps", {}).get(fields["step"], {})
        if refused.reason == Unclaimable.HELD_BY_THIS_MESSAGE:
            delay = min(max(1, math.ceil(float(step.get("lease_expires_at", 0)) - time.time()) + 1), MAX_SQS_DELAY)
            log.info("message came back while its step is held; postponed", extra={**fields, "delay": delay})
            return ItemResult(Outcome.POSTPONE, delay)
        if refused.reason == Unclaimable.FINISHED and step.get("state") == StepState.FAILED:
            log.warning(
                "message for a failed step ignored: run `gpupipe retry` to run it again",
                extra={**fields, "outcome": Outcome.SKIPPED.value, "reason": refused.reason.value, "error": step.get("error")},
            )
            return ItemResult(Outcome.SKIPPED)
        log.info("step not claimed", extra={**fields, "outcome": Outcome.SKIPPED.value, "reason": refused.reason.value})
        return ItemResult(Outcome.SKIPPED)

    def _hand_back(self, claim: Claim, fields: dict[str, Any]) -> None:
        try:
            self.store.release(claim, time.time())
            log.warning("step released on shutdown", extra=fields)
        except ClaimLost:
            log.warning("step not released on shutdown: the claim was already lost", extra=fields)

    def _failed(self, claim: Claim, error: Exception, fields: dict[str, Any]) -> ItemResult:
        reason = describe(error)
        severity = classify(error)
        attempts_used = claim.failures + 1
        try:
            if severity == Severity.PERMANENT:
                self.store.mark_failed(claim, time.time(), reason)
                result = ItemResult(Outcome.FAILED)
            elif attempts_used >= self.config.max_attempts:
                self.store.mark_failed(claim, time.time(), f"gave up after {attempts_used} attempts: {reason}")
                result = ItemResult(Outcome.FAILED)
            else:
                self.store.release_after_error(claim, time.time(), reason)
                result = ItemResult(Outcome.RETRY, min(self.config.retry_delay_seconds, MAX_SQS_DELAY))
        except ClaimLost:
            log.warning("step failed after its claim was lost; the new holder decides", extra={**fields, "reason": reason})
            return ItemResult(Outcome.LOST)
        log.log(
            logging.WARNING if result.outcome == Outcome.RETRY else logging.ERROR,
            "step failed",
            extra={**fields, "outcome": result.outcome.value, "severity": severity.value, "reason": reason, "failures": attempts_used},
            exc_info=severity == Severity.TRANSIENT and not isinstance(error, StepTimedOut),
        )
        return result
