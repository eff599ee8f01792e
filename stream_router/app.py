"""The intake and router Lambdas: two handlers from one package.

``intake_handler`` reads the intake queue, where S3 sends its notifications, and
creates one job item per new object version. ``stream_handler`` reads the jobs
table's stream and sends each job to the steps its graph makes ready, or finishes it.

The service name (a log field and the metrics' ``service`` dimension, which the
dashboard reads) comes from ``POWERTOOLS_SERVICE_NAME``: intake or router.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from pipeline_core import aws
from pipeline_core.jobs import JobStatus, WorkMessage
from pipeline_core.jobstore import JobStore
from pipeline_core.records import JobRecord, job_from_image, step_summary
from pipeline_core.s3events import created_objects, is_test_event
from stream_router.routing import Enqueue, Finish, Queue, intake_refusal, route

logger = Logger()
metrics = Metrics(namespace="GpuPipeline")
intake_processor = BatchProcessor(event_type=EventType.SQS)
stream_processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def job_store() -> JobStore:
    return JobStore(aws.table(aws.pipeline().jobs_table))


# --- intake: S3 -> intake queue -> job items -------------------------------------------


def intake_record(record: SQSRecord) -> None:
    """One intake-queue message holds one S3 notification: a job per created object version.

    A duplicate event creates nothing (conditional put); the test event and keys
    outside the prefix or suffixes are logged and dropped. Raising leaves only
    this message for redelivery.
    """
    event = json.loads(record.body)
    if is_test_event(event):
        logger.info("s3 test event ignored")
        return
    config = aws.pipeline()
    for obj in created_objects(event):
        fields = {"job_id": obj.job_id, "key": obj.key}
        refusal = intake_refusal(obj.key, config.input_prefix, config.allowed_suffixes)
        if refusal:
            logger.info("upload ignored", extra={**fields, "reason": refusal})
            metrics.add_metric(name="UploadsIgnored", unit=MetricUnit.Count, value=1)
        elif job_store().create_job(obj, config.graph, time.time()):
            logger.info("job created", extra={**fields, "steps": config.step_names})
            metrics.add_metric(name="JobsCreated", unit=MetricUnit.Count, value=1)
        else:
            logger.info("duplicate event: job exists", extra=fields)
            metrics.add_metric(name="DuplicateEvents", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context
@metrics.log_metrics
def intake_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=intake_record, processor=intake_processor, context=context)


# --- routing: DynamoDB stream -> step queues ----------------------------------------


def route_record(record: DynamoDBRecord) -> None:
    """Apply what one job-item change sets off. Raising marks only this record failed."""
    change = record.dynamodb
    old = job_from_image(change.old_image) if change else None
    new = job_from_image(change.new_image) if change else None
    if new is None:  # a removal, or a segment's item: sets nothing off
        return
    for action in route(str(record.event_name.name if record.event_name else ""), old, new):
        if isinstance(action, Enqueue):
            enqueue(new, action.step)
        elif isinstance(action, Queue):
            # The stream record's id names this queueing: a retried record sends again, any other is refused.
            if job_store().joins.queue(new.job_id, action.step, action.parents, str(record.event_id), time.time()):
                enqueue(new, action.step)
        elif isinstance(action, Finish):
            finish(new, action)


def enqueue(job: JobRecord, step: str) -> None:
    config = aws.pipeline()
    message = WorkMessage.for_job(job.obj, step)
    aws.client("sqs").send_message(QueueUrl=config.step(step).queue_url, MessageBody=message.to_body())
    logger.info("job sent to step", extra={"job_id": job.job_id, "key": job.key, "step": step})
    metrics.add_metric(name="StepsEnqueued", unit=MetricUnit.Count, value=1)
    steps_to_wake[step] = steps_to_wake.get(step, 0) + 1


# Messages sent per step in the batch being routed, in order: the scaler is woken once per step per batch.
steps_to_wake: dict[str, int] = {}


def wake_scaler() -> None:
    """Wake the scaler once for each step that got work, with the count sent (queue readings lag it), asynchronously;
    on failure its schedule still runs."""
    function, sent = aws.pipeline().scaler_function, dict(steps_to_wake)
    steps_to_wake.clear()
    if not function:
        return
    for step, count in sent.items():
        payload = json.dumps({"step": step, "sent": count}).encode()
        try:
            aws.client("lambda").invoke(FunctionName=function, InvocationType="Event", Payload=payload)
        except (BotoCoreError, ClientError) as error:
            logger.warning("could not wake the scaler: its schedule will scale the step", extra={"step": step, "reason": str(error)})
            metrics.add_metric(name="ScalerWakeFailures", unit=MetricUnit.Count, value=1)


def finish(job: JobRecord, action: Finish) -> None:
    """Record the final status (the worker usually has already), then count and notify once per end.

    The end is named by the finishing image's ``updated_at``: a replayed stream record finds
    it claimed and announces nothing; a job retried and finished again is announced again.
    """
    store = job_store()
    store.set_status(job.job_id, action.status, time.time())
    fields = {"job_id": job.job_id, "key": job.key, "status": action.status.value, "reason": action.reason}
    ended_at = job.updated_at
    if not store.claim_announcement(job.job_id, ended_at):
        logger.info("job end already announced: replayed record", extra=fields)
        return
    logger.info("job finished", extra=fields)
    topic = aws.pipeline().notify_topic_arn
    if topic:
        try:
            aws.client("sns").publish(
                TopicArn=topic,
                Subject=f"gpu-pipeline job {action.status.value}",
                Message=json.dumps({**fields, "bucket": job.bucket, "steps": {name: step_summary(s) for name, s in job.steps.items()}}),
            )
        except Exception:
            store.release_announcement(job.job_id, ended_at)  # the record's retry announces it
            raise
    metrics.add_metric(name="JobsSucceeded" if action.status == JobStatus.SUCCEEDED else "JobsFailed", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context
@metrics.log_metrics
def stream_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    steps_to_wake.clear()
    try:
        return process_partial_response(event=event, record_handler=route_record, processor=stream_processor, context=context)
    finally:
        wake_scaler()
