"""Long videos in segments, the I/O: split (record the plan, send a message per segment), fan-in reads, merge inputs.

The step lifecycle (``worker.lifecycle``) claims, bounds, fences, retries and commits segments and the
merge exactly as it does whole steps; this module does what is particular to a split:

- **Split**: the worker that claimed the whole step plans its segments (``pipeline_core.segment_plan``),
  records them on the job item with one conditional update fenced by that claim, then sends one message
  per segment to the step's own queue. Should it die between the two, the step's message comes back,
  finds the step split (``Refusal.SPLIT``) and sends the messages of segments nobody has claimed yet.
- **Merge inputs**: the worker whose segment was the last to be done reads every segment's committed
  result (the ``result_file`` each segment's ``mark_segment_done`` recorded) and the files beside it.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline_core.bodies import WorkItem
from pipeline_core.jobs import WorkMessage, split_s3_uri
from pipeline_core.jobstore import Claim, JobStore
from pipeline_core.protocol.decisions import unclaimed
from pipeline_core.protocol.phases import Phase
from pipeline_core.records import JobRecord, SegmentRecord, StepRecord, segment_records
from pipeline_core.segment_plan import Segment, SegmentPlan
from worker.errors import TransientError
from worker.processing import Processor, SegmentPart, SplittingProcessor, can_split, reads_ranges
from worker.ranged import Source

log = logging.getLogger("worker")

SQS_BATCH = 10
FETCH_THREADS = 8


class SegmentsNotSent(TransientError):
    """The split is recorded but its segment messages were not (all) sent: the step's message, requeued,
    comes back and sends them (``Splitter.resume``)."""


class Splitter:
    def __init__(self, sqs: Any, s3: Any, store: JobStore, queue_url: str, segment_seconds: float, processor: Processor):
        self.sqs, self.s3, self.store, self.queue_url = sqs, s3, store, queue_url
        self.segment_seconds = segment_seconds
        self.processor = processor
        self.splitting: SplittingProcessor | None = processor if sqs is not None and segment_seconds > 0 and can_split(processor) else None
        # Plan from the header and read each segment's range only (worker.ranged), not the whole file per segment.
        self.reads_ranges = self.splitting is not None and reads_ranges(self.splitting)

    def plan(self, source: Source) -> SegmentPlan | None:
        """The split of the input (downloaded, or read in ranges), or None when it runs in one piece."""
        if self.splitting is None:
            return None
        timeline = self.splitting.timeline(source)
        plan = SegmentPlan(timeline, self.segment_seconds) if timeline is not None else None
        return plan if plan is not None and plan.count else None

    def split(self, claim: Claim, item: WorkItem, plan: SegmentPlan, now: float, max_attempts: int = 0) -> None:
        """Record the plan and the retry budget (fenced by the claim), then send one message per segment
        (SegmentsNotSent if that fails)."""
        self.store.splits.record_split(claim, plan, now, max_attempts)
        try:
            self.send(item, list(range(plan.count)), claim.retried_at)
        except (ClientError, BotoCoreError, TransientError) as error:
            raise SegmentsNotSent(str(error)) from error

    def resume(self, job: JobRecord, item: WorkItem, message_id: str) -> int:
        """The step's message came back after a split, or ``gpupipe retry`` put the split step back to pending:
        (the step running again) send the messages of the segments no message carries (``unclaimed``)."""
        step = job.step(item.step)
        if step is None:
            return 0
        if step.phase == Phase.SPLIT_PENDING:
            self.store.splits.resume_split(item.job_id, item.step, time.time(), message_id)
        unsent = unclaimed(step, segment_records(step.segment_count, self.store.get_segments(item.job_id, item.step, step.segment_count)))
        if unsent:
            self.send(item, unsent, step.retried_at, job)
        return len(unsent)

    def send(self, item: WorkItem, indexes: list[int], retried_at: float | None, job: JobRecord | None = None) -> None:
        """One message per segment, each message's id recorded on its segment (``record_segment_message``) unless
        the step was retried since the sender read it (``retried_at`` as it found it)."""
        base = WorkMessage.for_job(item.obj, item.step)
        job = job if job is not None else self.store.get_job(item.job_id)
        for start in range(0, len(indexes), SQS_BATCH):
            chunk = indexes[start : start + SQS_BATCH]
            entries = [{"Id": str(index), "MessageBody": base.for_segment(index).to_body()} for index in chunk]
            response = self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            for sent in response.get("Successful", []):
                self.store.splits.record_segment_message(item.job_id, item.step, int(sent["Id"]), sent["MessageId"], retried_at, job)
            if response.get("Failed"):
                # The plan is recorded: the step's message comes back (it is not settled) and resumes the sends.
                raise TransientError(f"{len(response['Failed'])} segment messages were not sent: {response['Failed'][0].get('Message')}")

    # --- merge inputs ------------------------------------------------------------------------------------

    def fetch_parts(self, job_id: str, step: StepRecord, workdir: Path) -> list[SegmentPart]:
        """Every segment's committed result document and files, in order (fetched side by side: the merge waits on them)."""
        segments = step.plan.segments if step.plan is not None else []
        recorded = self.store.get_segments(job_id, step.name, len(segments))
        with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
            return list(pool.map(lambda segment: self._fetch_part(recorded[segment.index], segment, workdir), segments))

    def _fetch_part(self, recorded: SegmentRecord, segment: Segment, workdir: Path) -> SegmentPart:
        if recorded.result_file is None:
            raise TransientError(f"{segment.label} has no committed result")
        bucket, key = split_s3_uri(recorded.result_file)
        result = json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        prefix = key.rsplit("/", 1)[0] + "/"
        folder = workdir / f"segment-{segment.index:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        files = {}
        for name in result.get("files", []):
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(self.s3.get_object(Bucket=bucket, Key=prefix + name)["Body"].read())
            files[name] = path
        return SegmentPart(segment=segment, result=result, files=files)


def segments_summary(parts: list[SegmentPart]) -> list[dict[str, Any]]:
    """The merged result's ``segments``: each segment's range, attempt, worker and timings."""
    return [
        {
            "index": part.segment.index,
            "start_frame": part.segment.start_frame,
            "end_frame": part.segment.end_frame,
            "start_seconds": round(part.segment.start_seconds, 3),
            "end_seconds": round(part.segment.end_seconds, 3),
            "attempt": part.result.get("attempt"),
            "worker_id": part.result.get("worker_id"),
            "timings": part.result.get("timings", {}),
        }
        | ({"input_read": part.result["input_read"]} if "input_read" in part.result else {})
        for part in parts
    ]
