"""The dead-letter consumer: a message SQS moved to a step's dead-letter queue ends its job.

One event source mapping per step DLQ feeds ``handler``. The step is the one whose
``dlq_arn`` (in ``PIPELINE_CONFIG``) is the record's source. For each message, a router
step message or a raw S3 notification, the step is failed with "moved to the dead-letter
queue after N receives" and its job fails in the same conditional update (a split step's segment
message fails that segment, its step and its job, the step's error naming it:
"segment 3/8 [120 s, 180 s): moved to ..."); the router then
announces it. N is the step queue's ``maxReceiveCount`` from the pipeline definition (the
receives SQS allowed before it moved the message), or, where the definition lacks it, the
record's ``ApproximateReceiveCount``.

A step that is done or failed already (the worker gave up and failed it itself), or that
another message holds, is left alone; so is a split step that other messages carry without its
own (``decisions.on_step_dead_letter``: its segments' messages, or the message that merges). A running
split step some of whose segments have no message of their own (its splitter was killed between SQS's
answer and its records, or before it sent) gets those segments' messages sent here, as its step message
would have sent them, rather than failing a job whose segments would finish. A step
message naming no job is logged. A raw S3
notification naming no job creates the job first (as a worker would have), then fails it.
A body that can never be acted on is logged at error, counted, and deleted. Raising (an
unknown queue, a DynamoDB error) leaves only that message on the DLQ for another try.

The local runtime polls the DLQs and calls ``handler`` the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline_core import aws
from pipeline_core.bodies import InvalidMessage, parse_body
from pipeline_core.jobs import ObjectRef, StepState, WorkMessage, origin_id
from pipeline_core.jobstore import JobStore
from pipeline_core.pipeline import StepConfig
from pipeline_core.protocol.decisions import OnDeadLetter, on_segment_dead_letter, on_step_dead_letter, unclaimed
from pipeline_core.records import SegmentRecord, StepRecord, segment_records

logger = Logger()
metrics = Metrics(namespace="GpuPipeline")
processor = BatchProcessor(event_type=EventType.SQS)


def job_store() -> JobStore:
    return JobStore(aws.table(aws.pipeline().jobs_table))


def dead_letter_reason(step: StepConfig, receive_count: int | None) -> str:
    receives = step.max_receive_count or receive_count
    return f"moved to the dead-letter queue after {receives} receives" if receives else "moved to the dead-letter queue"


def dead_letter_record(record: SQSRecord) -> None:
    config = aws.pipeline()
    step = config.step_for_dead_letter_queue(record.event_source_arn)
    if step is None:
        # A mapping this pipeline does not know: keep the message (raising) rather than guess.
        raise LookupError(f"{record.event_source_arn} is no step's dead-letter queue in PIPELINE_CONFIG")
    # A requeued copy (a retry or hand-back) carries its chain's origin id, which is what the claim recorded.
    message_id = origin_id(record.message_id, record.raw_event.get("messageAttributes"))
    fields: dict[str, Any] = {"step": step.name, "message_id": message_id}
    try:
        parsed = parse_body(record.body, step.name)
    except InvalidMessage as error:
        logger.error("unreadable dead-lettered message deleted", extra={**fields, "reason": str(error), "body": record.body[:500]})
        metrics.add_metric(name="DeadLettersUnreadable", unit=MetricUnit.Count, value=1)
        return
    if parsed.is_test_event:
        logger.info("dead-lettered s3 test event deleted", extra=fields)
        return
    receive_count = record.raw_event.get("attributes", {}).get("ApproximateReceiveCount")
    reason = dead_letter_reason(step, int(receive_count) if receive_count else None)
    store = job_store()
    for item in parsed.items:
        where = {**fields, "job_id": item.job_id, "key": item.obj.key}
        send = sqs_sender(step.queue_url, item.obj, step.name)
        if item.segment is None:
            fail_step(store, item.obj, item.job_id, step.name, message_id, reason, item.from_s3_event, where, send)
        else:
            fail_segment(store, item.job_id, step.name, item.segment, message_id, reason, {**where, "segment": item.segment}, send)


def fail_segment(
    store: JobStore, job_id: str, step: str, index: int, message_id: str, reason: str, fields: dict[str, Any], send: Sender | None = None
) -> None:
    """A split step's segment message was dead-lettered: fail the segment, its step and its job, the segment named.

    When the segment is done and its message carried the merge (``decisions.on_segment_dead_letter``), the step
    fails as "merge: ...". The store's conditions make each write only while the rule still holds.
    """
    job = store.get_job(job_id)
    record = job.step(step) if job is not None else None
    plan = record.plan if record is not None else None
    segment = plan.segments[index] if plan is not None and 0 <= index < plan.count else None
    if job is None or record is None or segment is None:
        logger.error("dead-lettered segment message names no segment of its job: deleted", extra=fields)
        metrics.add_metric(name="DeadLettersDropped", unit=MetricUnit.Count, value=1)
        return
    now = time.time()
    sub = store.get_segment(job_id, step, index) or SegmentRecord(index)
    decision = on_segment_dead_letter(record, sub, message_id)
    if decision == OnDeadLetter.REDRIVE_MERGE:
        if redrive(store, record, job_id, step, message_id, reason, send):
            logger.warning("dead-lettered message carried a merge with budget left: a fresh message carries it", extra=fields)
            metrics.add_metric(name="DeadLettersRedriven", unit=MetricUnit.Count, value=1)
            return
        decision = OnDeadLetter.FAIL_MERGE
    if decision == OnDeadLetter.FAIL_SEGMENT and store.dead_letters.fail_segment(job, step, segment, reason, now, message_id):
        logger.warning("step failed: a segment's message was dead-lettered", extra={**fields, "reason": f"{segment.label}: {reason}"})
        metrics.add_metric(name="StepsDeadLettered", unit=MetricUnit.Count, value=1)
        return
    if decision == OnDeadLetter.FAIL_MERGE and store.dead_letters.fail_merge(job_id, step, f"merge: {reason}", now, message_id):
        logger.warning("step failed: the message holding its merge was dead-lettered", extra={**fields, "reason": reason})
        metrics.add_metric(name="StepsDeadLettered", unit=MetricUnit.Count, value=1)
        return
    logger.info(
        "dead-lettered segment message for a finished or otherwise held segment: deleted",
        extra={**fields, "state": sub.state.value, "step_state": record.state.value, "decision": decision.value},
    )
    metrics.add_metric(name="DeadLettersDropped", unit=MetricUnit.Count, value=1)


Sender = Callable[[int | None], str]  # sends a segment's message (or, for None, the step's own) to the step's queue


def sqs_sender(queue_url: str, obj: ObjectRef, step: str) -> Sender:
    """Send one segment's message of ``step`` of the job for ``obj`` (or the step's own) to the step's queue; its id."""
    base = WorkMessage.for_job(obj, step)

    def send(index: int | None) -> str:
        body = (base if index is None else base.for_segment(index)).to_body()
        return str(aws.client("sqs").send_message(QueueUrl=queue_url, MessageBody=body)["MessageId"])

    return send


def redrive(store: JobStore, record: StepRecord, job_id: str, step: str, message_id: str, reason: str, send: Sender | None) -> bool:
    """A dead-lettered merge with budget left: a fresh step message carries it on (``decisions.OnDeadLetter.REDRIVE_MERGE``)."""
    if send is None:
        return False
    return store.dead_letters.redrive_merge(job_id, step, f"merge: {reason}", time.time(), message_id, send(None), record.failures)


def fail_step(
    store: JobStore,
    obj: ObjectRef,
    job_id: str,
    step: str,
    message_id: str,
    reason: str,
    from_s3: bool,
    fields: dict[str, Any],
    send: Sender | None = None,
) -> None:
    job = store.get_job(job_id)
    record = job.step(step) if job is not None else None
    segments = (
        segment_records(record.segment_count, store.get_segments(job_id, step, record.segment_count)) if record and record.split else []
    )
    decision = on_step_dead_letter(record, segments, message_id) if record is not None else OnDeadLetter.FAIL_STEP
    now = time.time()
    if decision == OnDeadLetter.SEND_UNSENT and record is not None and send is not None:
        unsent = unclaimed(record, segments)
        for index in unsent:  # a message whose record is refused (a claim or a retry came first) is a fenced duplicate
            store.splits.record_segment_message(job_id, step, index, send(index), record.retried_at, job)
        logger.warning(
            "dead-lettered message of a split step: its unsent segments' messages sent instead", extra={**fields, "sent": unsent}
        )
        metrics.add_metric(name="DeadLettersDropped", unit=MetricUnit.Count, value=1)
        return
    if decision == OnDeadLetter.SEND_UNSENT:
        decision = OnDeadLetter.FAIL_STEP
    if decision == OnDeadLetter.REDRIVE_MERGE and record is not None:
        if redrive(store, record, job_id, step, message_id, reason, send):
            logger.warning("dead-lettered message carried a merge with budget left: a fresh message carries it", extra=fields)
            metrics.add_metric(name="DeadLettersRedriven", unit=MetricUnit.Count, value=1)
            return
        decision = OnDeadLetter.FAIL_MERGE
    if decision == OnDeadLetter.DROP and record is not None and not record.finished:
        logger.info("dead-lettered message of a split step that other messages carry: deleted", extra=fields)
        metrics.add_metric(name="DeadLettersDropped", unit=MetricUnit.Count, value=1)
        return
    if decision == OnDeadLetter.FAIL_MERGE and store.dead_letters.fail_merge(job_id, step, reason, now, message_id):
        logger.warning("step failed: the message carrying its merge was dead-lettered", extra={**fields, "reason": reason})
        metrics.add_metric(name="StepsDeadLettered", unit=MetricUnit.Count, value=1)
        return
    if decision == OnDeadLetter.FAIL_STEP and store.dead_letters.fail_step(job_id, step, reason, now, message_id):
        logger.warning("step failed: its message was dead-lettered", extra={**fields, "reason": reason})
        metrics.add_metric(name="StepsDeadLettered", unit=MetricUnit.Count, value=1)
        return
    job = store.get_job(job_id)
    if job is None and from_s3:
        # A raw S3 notification on a step queue: the worker creates such jobs as it claims them.
        store.create_job(obj, [step], now)
        if store.dead_letters.fail_step(job_id, step, reason, now, message_id):
            logger.warning("job created and failed: its S3 notification was dead-lettered", extra={**fields, "reason": reason})
            metrics.add_metric(name="StepsDeadLettered", unit=MetricUnit.Count, value=1)
            return
        job = store.get_job(job_id)
    found = job.step(step) if job is not None else None
    if job is None:
        logger.error("dead-lettered message names no job: deleted", extra=fields)
    elif found is None:
        logger.error("dead-lettered message names a step its job does not have: deleted", extra=fields)
    elif found.state in (StepState.DONE, StepState.FAILED):
        logger.info("dead-lettered message for a finished step: deleted", extra={**fields, "state": found.state.value})
    else:
        logger.info(
            "dead-lettered message for a step another message holds: left to it",
            extra={**fields, "state": found.state.value, "holder": found.message_id},
        )
    metrics.add_metric(name="DeadLettersDropped", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=dead_letter_record, processor=processor, context=context)
