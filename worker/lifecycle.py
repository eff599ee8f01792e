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
- **Budget**: transient failures are counted in the job item (``failures``), and so is each attempt
  that ended with no answer (the claim that takes over its expired lease counts it); the step fails with
  "gave up after N attempts" when they reach ``max_attempts``. Permanent failures fail it at once.
- **Segments** (``worker.splitter``): a whole-step claim of a video longer than ``SEGMENT_SECONDS``
  plans and records segments instead of processing, and its message is settled. Each segment message
  goes through this same lifecycle on the segment's own item (claim, bound, fence, budget); a
  segment that fails fails the step, named (``segment 7/40 [420 s, 480 s): ...``). A worker that reads the
  set complete after its segment's count claims the merge (a new attempt of the step; one wins), writes the
  merged result and commits it with ``mark_done``; its segment's message is settled only after that, so a
  merge that crashed is claimed again by that message's redelivery, without reprocessing any segment. What
  to do with a refused claim is ``protocol.on_refused``'s decision; this module only carries it out.
"""

from __future__ import annotations

import logging
import math
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline_core.bodies import WorkItem
from pipeline_core.jobstore import UNANSWERED, Claim, ClaimLost, ClaimRefused, JobStore
from pipeline_core.protocol.decisions import OnRefused, on_refused, on_segment_done
from pipeline_core.segment_plan import SegmentPlan
from worker.config import WorkerConfig
from worker.errors import Severity, classify, describe
from worker.keepalive import Held
from worker.logs import Stopwatch
from worker.messages import ItemResult, Outcome
from worker.processing import Processor, StepContext, StepOutput
from worker.s3input import S3Input, first_read
from worker.splitter import SegmentsNotSent, Splitter, segments_summary
from worker.storage import RESULT_SCHEMA_VERSION, AttemptOutputs, fetch_input
from worker.upstream import read_upstream, upstream_summary

log = logging.getLogger("worker")

MAX_SQS_DELAY = 900  # DelaySeconds cap of SendMessage

# What an attempt's work returns: the input's head, the output (or the segments to split into), extra result fields.
WorkResult = tuple[dict[str, Any], StepOutput | SegmentPlan, dict[str, Any]]
Work = Callable[[Claim, WorkItem, Path, Stopwatch], WorkResult]


class Abandoned(Exception):
    """Stopping, and the step did not finish within the grace period: it was handed back."""


class StepTimedOut(Exception):
    """The processor did not return within the step's timeout."""


class StepRunner:
    def __init__(self, config: WorkerConfig, *, s3: Any, store: JobStore, processor: Processor, stop: threading.Event, sqs: Any = None):
        self.config, self.s3, self.store, self.processor, self.stop = config, s3, store, processor, stop
        self.hung = threading.Event()  # a processor thread did not return: the process must be replaced
        self.splitter = Splitter(sqs, s3, store, config.queue_url, config.segment_seconds, processor)

    def run(self, item: WorkItem, held: Held) -> ItemResult:
        fields: dict[str, Any] = {"job_id": item.job_id, "key": item.obj.key, "step": item.step, "message_id": held.message_id}
        if item.segment is not None:
            fields["segment"] = item.segment
        created = None
        if item.from_s3_event:  # no router made the job: create it with its step claimed, one write for both
            created = self.store.claims.create_claimed(
                item.obj, item.step, self.config.worker_id, held.message_id, time.time(), self.config.visibility_timeout
            )
            if created is not None:
                log.info("job created", extra=fields)
        try:
            claim = created or self.store.claims.claim(
                item.job_id,
                item.step,
                self.config.worker_id,
                held.message_id,
                time.time(),
                self.config.visibility_timeout,
                segment=item.segment,
            )
        except ClaimRefused as refused:
            return self._refused(refused, item, held, fields)
        result, completes_set = self._holding(claim, item, held, fields, self._download_and_process)
        return self._merge(item, held, fields) if completes_set else result

    def _merge(self, item: WorkItem, held: Held, fields: dict[str, Any]) -> ItemResult:
        """Every segment is done: claim the step again, merge the segments' results, commit with ``mark_done``."""
        fields = {key: value for key, value in fields.items() if key not in ("segment", "attempt")} | {"merge": True}
        try:
            claim = self.store.claims.claim_merge(
                item.job_id,
                item.step,
                self.config.worker_id,
                held.message_id,
                time.time(),
                self.config.visibility_timeout,
                self.config.max_attempts,
            )
        except ClaimRefused as refused:
            return self._refused(refused, item, held, fields, merging=True)
        result, _ = self._holding(claim, item, held, fields, self._fetch_and_merge)
        return result

    def _holding(self, claim: Claim, item: WorkItem, held: Held, fields: dict[str, Any], work: Work) -> tuple[ItemResult, bool]:
        fields["attempt"] = claim.attempt
        log.info("merge claimed" if claim.merging else "segment claimed" if claim.segment is not None else "step claimed", extra=fields)
        held.take(claim)
        try:
            return self._attempt(claim, item, held, fields, work)
        finally:
            held.let_go()

    # --- one attempt ---------------------------------------------------------------------------------

    def _attempt(self, claim: Claim, item: WorkItem, held: Held, fields: dict[str, Any], work: Work) -> tuple[ItemResult, bool]:
        """One bounded, fenced attempt; (its result, whether it completed the set of a split step's segments)."""
        started = time.perf_counter()
        watch = Stopwatch()
        outputs = AttemptOutputs(self.s3, self.config.results_bucket, self.config.results_prefix, item.obj, claim, held.lost)
        completes_set = False
        if claim.failures >= self.config.max_attempts:
            return self._budget_spent(claim, fields), False
        with tempfile.TemporaryDirectory(prefix="gpupipe-") as tmp:
            try:
                outputs.check_key_length()
                head, output, extra = self._run_bounded(claim, item, Path(tmp), watch, work)
                if held.lost.is_set():
                    raise ClaimLost("the claim was taken over while the step ran")
                if isinstance(output, SegmentPlan):
                    return self._split(claim, item, held, output, fields, watch), False
                with watch.time("upload"):
                    outputs.put_files(output.files)
                result_file = outputs.put_result(self._document(claim, item, head, output, watch) | extra)
                watch.timings["total"] = round(time.perf_counter() - started, 4)
                if claim.segment is not None:
                    done, planned = self.store.splits.mark_segment_done(claim, time.time(), result_file, watch.timings)
                    completes_set = on_segment_done(done, planned)
                    fields = {**fields, "segments_done": done, "segments": planned}
                else:
                    self.store.claims.mark_done(claim, time.time(), result_file, watch.timings)
            except Abandoned:
                self._hand_back(claim, fields)
                raise
            except ClaimLost:
                log.warning("claim lost; the new holder repeats the step and this attempt wrote nothing it records", extra=fields)
                return ItemResult(Outcome.LOST), False
            except Exception as error:  # noqa: BLE001 - every failure is classified, none is lost
                return self._failed(claim, error, fields), False
        event = "merge done" if claim.merging else "segment done" if claim.segment is not None else "step done"
        log.info(event, extra={**fields, "outcome": Outcome.DONE.value, "result_file": result_file, "timings": watch.timings})
        return ItemResult(Outcome.DONE), completes_set

    def _split(self, claim: Claim, item: WorkItem, held: Held, plan: SegmentPlan, fields: dict[str, Any], watch: Stopwatch) -> ItemResult:
        """Record the split and send the segments' messages; the step has no holder from then on, its segments do."""
        segments = plan.segments
        try:
            self.splitter.split(claim, item, plan, time.time(), self.config.max_attempts)
        except SegmentsNotSent as error:
            held.let_go()
            log.warning(
                "step split, its segment messages not sent: the step's message comes back after the retry delay and sends them",
                extra={**fields, "segments": len(segments), "error": str(error)},
            )
            return ItemResult(Outcome.RETRY, min(self.config.retry_delay_seconds, MAX_SQS_DELAY))
        held.let_go()
        log.info("step split", extra={**fields, "outcome": Outcome.DONE.value, "segments": len(segments), "timings": watch.timings})
        return ItemResult(Outcome.DONE)

    def _run_bounded(self, claim: Claim, item: WorkItem, workdir: Path, watch: Stopwatch, work: Work) -> WorkResult:
        """Run ``work`` in a thread; wait for it until the step timeout, or the grace period once stopping."""
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = work(claim, item, workdir, watch)
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

    def _download_and_process(self, claim: Claim, item: WorkItem, workdir: Path, watch: Stopwatch) -> WorkResult:
        opened: list[S3Input] = []  # closed when the step ends, however it ends: their cached windows go then
        try:
            return self._read_and_process(claim, item, workdir, watch, opened)
        finally:
            for source in opened:
                source.close()

    def _read_and_process(self, claim: Claim, item: WorkItem, workdir: Path, watch: Stopwatch, opened: list[S3Input]) -> WorkResult:
        suffix = Path(item.obj.key).suffix.lower()
        input_path = workdir / ("input" + (suffix if suffix[1:].isalnum() and len(suffix) <= 9 else ""))
        source = None
        if self.splitter.reads_ranges:  # plan from the header, and a segment reads only its range (worker.ranged)
            with watch.time("download"):
                first = first_read(item.obj.key, item.obj.size, claim.segment is not None)
                # The spill file is named apart from the download's "input.<suffix>", which a key's suffix could match.
                source = S3Input(self.s3, item.obj, self.config.max_file_bytes, first, spill=workdir / "spill.ranges")
                opened.append(source)
            head = source.response
            if claim.segment is None:
                with watch.time("plan"):
                    plan = self.splitter.plan(source)
                if plan is not None:
                    return head, plan, {}
                with watch.time("download"):  # one piece: the whole file, the bytes read so far not read again
                    source.download(input_path)
                source = None
        else:
            with watch.time("download"):
                head = fetch_input(self.s3, item.obj, input_path, self.config.max_file_bytes)
            if claim.segment is None:
                with watch.time("plan"):
                    plan = self.splitter.plan(input_path)
                if plan is not None:
                    return head, plan, {}
        obj = item.obj
        with watch.time("upstream"):
            upstream = read_upstream(self.s3, claim.job, claim.step, workdir)
        context = StepContext(
            claim.job_id, claim.step, obj.bucket, obj.key, obj.version, claim.attempt, workdir, claim.span, source, upstream
        )
        with watch.time("process"):
            output = self.processor.process(input_path, context)
        extra: dict[str, Any] = {"input_read": {"requests": source.calls, "bytes": source.bytes_read}} if source is not None else {}
        if upstream:
            extra["upstream"] = upstream_summary(upstream)
        return head, output, extra

    def _fetch_and_merge(self, claim: Claim, item: WorkItem, workdir: Path, watch: Stopwatch) -> WorkResult:
        """The merge's work: every segment's committed result and files, merged by the processor into the whole file's."""
        step = job.step(claim.step) if (job := self.store.get_job(claim.job_id)) is not None else None
        if step is None or step.plan is None:
            raise ClaimLost(f"{claim.job_id}/{claim.step}: the split step's record is gone")
        with watch.time("download"):
            parts = self.splitter.fetch_parts(claim.job_id, step, workdir)
        upstream = read_upstream(self.s3, claim.job, claim.step, workdir)
        context = StepContext(
            claim.job_id, claim.step, item.obj.bucket, item.obj.key, item.obj.version, claim.attempt, workdir, upstream=upstream
        )
        with watch.time("merge"):
            output = self.processor.merge(parts, context)  # type: ignore[attr-defined]
        pinned = parts[0].result["input"]
        head = {"VersionId": pinned.get("version_id"), "ETag": pinned["etag"], "ContentLength": pinned["size"]}
        return head, output, {"segments": segments_summary(parts)} | ({"upstream": upstream_summary(upstream)} if upstream else {})

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

    def _refused(self, refused: ClaimRefused, item: WorkItem, held: Held, fields: dict[str, Any], merging: bool = False) -> ItemResult:
        """Carry out ``protocol.on_refused``: the rules live there, this only acts."""
        step = refused.job.step(item.step) if refused.job is not None else None
        decision = on_refused(refused.reason, step, segment_message=item.segment is not None, merging=merging)
        if decision in (OnRefused.RESUME, OnRefused.RESUME_AND_MERGE) and refused.job is not None:
            sent = self.splitter.resume(refused.job, item, held.message_id)
            log.info("step message settled: the step is split into segments", extra={**fields, "resent": sent})
            # after a retry that found every segment done, only the merge is left: this message carries it
            return self._merge(item, held, fields) if decision == OnRefused.RESUME_AND_MERGE else ItemResult(Outcome.SKIPPED)
        if decision == OnRefused.MERGE:
            return self._merge(item, held, fields)
        if decision == OnRefused.POSTPONE:
            holder = step if item.segment is None or merging else refused.segment
            lease = (holder.lease_expires_at if holder is not None else None) or 0.0
            delay = min(max(1, math.ceil(lease - time.time()) + 1), MAX_SQS_DELAY)
            log.info("message came back while its step is held; postponed", extra={**fields, "delay": delay})
            return ItemResult(Outcome.POSTPONE, delay)
        if decision == OnRefused.REPORT_FAILED:
            log.warning(
                "message for a failed step ignored: run `gpupipe retry` to run it again",
                extra={**fields, "outcome": Outcome.SKIPPED.value, "reason": refused.reason.value, "error": step.error if step else None},
            )
            return ItemResult(Outcome.SKIPPED)
        log.info("step not claimed", extra={**fields, "outcome": Outcome.SKIPPED.value, "reason": refused.reason.value})
        return ItemResult(Outcome.SKIPPED)

    def _hand_back(self, claim: Claim, fields: dict[str, Any]) -> None:
        try:
            self.store.claims.release(claim, time.time())
            log.warning("step released on shutdown", extra=fields)
        except ClaimLost:
            log.warning("step not released on shutdown: the claim was already lost", extra=fields)

    def _budget_spent(self, claim: Claim, fields: dict[str, Any]) -> ItemResult:
        """Attempts that ended with no answer (counted as this claim took over) spent the budget: fail, run nothing."""
        reason = f"{_where(claim)}gave up after {claim.failures} attempts: {UNANSWERED}"
        try:
            self.store.claims.mark_failed(claim, time.time(), reason)
        except ClaimLost:
            return ItemResult(Outcome.LOST)
        log.error("step failed", extra={**fields, "outcome": Outcome.FAILED.value, "reason": reason, "failures": claim.failures})
        return ItemResult(Outcome.FAILED)

    def _failed(self, claim: Claim, error: Exception, fields: dict[str, Any]) -> ItemResult:
        reason = describe(error)
        severity = classify(error)
        attempts_used = claim.failures + 1
        where = _where(claim)
        try:
            if severity == Severity.PERMANENT:
                self.store.claims.mark_failed(claim, time.time(), where + reason)
                result = ItemResult(Outcome.FAILED)
            elif attempts_used >= self.config.max_attempts:
                self.store.claims.mark_failed(claim, time.time(), f"{where}gave up after {attempts_used} attempts: {reason}")
                result = ItemResult(Outcome.FAILED)
            else:
                self.store.claims.release_after_error(claim, time.time(), reason)
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


def _where(claim: Claim) -> str:
    """What a split step's failure names: "segment 7/40 [420 s, 480 s): " or "merge: "; nothing for a whole step."""
    return f"{claim.span.label}: " if claim.span is not None else "merge: " if claim.merging else ""
