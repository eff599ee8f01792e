"""Lambda-shaped events for the handler tests; the shapes themselves live in local_runtime.events."""

from __future__ import annotations

import json
from typing import Any

from local_runtime.events import LambdaContext, stream_records

__all__ = ["LambdaContext", "read_stream", "sqs_event"]


def read_stream(streams: Any, stream_arn: str) -> list[dict[str, Any]]:
    """Every record on a DynamoDB stream, as the event source mapping hands them to Lambda."""
    records = []
    for shard in streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
        records += stream_records(streams.get_records(ShardIterator=iterator)["Records"], stream_arn)
    return records


def sqs_event(*bodies: dict[str, Any] | str, queue_arn: str = "arn:aws:sqs:us-east-1:123456789012:intake") -> dict[str, Any]:
    """An SQS event source mapping batch holding these message bodies."""
    from local_runtime.events import sqs_event as from_messages

    messages = [
        {"MessageId": f"msg-{index}", "ReceiptHandle": f"handle-{index}", "Body": body if isinstance(body, str) else json.dumps(body)}
        for index, body in enumerate(bodies)
    ]
    return from_messages(messages, queue_arn)
