"""What a step DLQ's event source mapping does, for a StepStack: batches into the real dead-letter handler."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager

from local_runtime.events import LambdaContext, sqs_event
from pipeline_core import aws
from tests.support.aws import StepStack


@contextmanager
def configured(stack: StepStack, step: str, *more: tuple[StepStack, str]) -> Iterator[None]:
    """Point the dead-letter handler (PIPELINE_CONFIG, endpoint) at this stack's step, and at the ``(stack, step)``
    pairs in ``more`` (steps beside it on the same jobs table: ``StepStack.beside``), for the block's length."""
    saved = {name: os.environ.get(name) for name in ("PIPELINE_CONFIG", "AWS_ENDPOINT_URL")}
    try:
        _configure([(stack, step), *more])
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        aws.reset()


def _dlq_arn(stack: StepStack) -> str:
    attributes = stack.aws["sqs"].get_queue_attributes(QueueUrl=stack.dlq_url, AttributeNames=["QueueArn"])["Attributes"]
    return str(attributes["QueueArn"])


def _configure(steps: list[tuple[StepStack, str]]) -> None:
    tables = {stack.table_name for stack, _ in steps}
    assert len(tables) == 1, f"one pipeline has one jobs table, not {sorted(tables)}"
    configs = [
        {
            "name": step,
            "queue_url": stack.queue_url,
            "dlq_url": stack.dlq_url,
            "dlq_arn": _dlq_arn(stack),
            "max_receive_count": stack.max_receive_count,
        }
        for stack, step in steps
    ]
    os.environ["PIPELINE_CONFIG"] = json.dumps({"steps": configs, "jobs_table": steps[0][0].table_name})
    os.environ["AWS_ENDPOINT_URL"] = steps[0][0].endpoint
    aws.reset()


def pump(stack: StepStack) -> int:
    """One pass over the stack's DLQ: hand what is there to the handler, delete what it settled; how many it saw."""
    from stream_router import deadletter

    sqs = stack.aws["sqs"]
    messages = sqs.receive_message(
        QueueUrl=stack.dlq_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"]
    ).get("Messages", [])
    if not messages:
        return 0
    dlq_arn = next(step["dlq_arn"] for step in json.loads(os.environ["PIPELINE_CONFIG"])["steps"] if step["dlq_url"] == stack.dlq_url)
    result = deadletter.handler(sqs_event(messages, dlq_arn), LambdaContext("dead-letter"))
    failed = {item["itemIdentifier"] for item in result["batchItemFailures"]}
    for message in messages:
        if message["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=stack.dlq_url, ReceiptHandle=message["ReceiptHandle"])
    return len(messages)
