"""Invoking the Lambda handlers as Lambda does: a context object and events in Lambda's shape."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LambdaContext:
    function_name: str = "test-function"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def stream_records(streams: Any, stream_arn: str) -> list[dict[str, Any]]:
    """Every record on a DynamoDB stream, as the event source mapping hands them to Lambda."""
    records = []
    description = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]
    for shard in description["Shards"]:
        iterator = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
        for record in streams.get_records(ShardIterator=iterator)["Records"]:
            record = json.loads(json.dumps(record, default=lambda value: value.timestamp()))
            record["eventSourceARN"] = stream_arn
            records.append(record)
    return records


def sqs_event(*bodies: dict[str, Any] | str, queue_arn: str = "arn:aws:sqs:us-east-1:123456789012:intake") -> dict[str, Any]:
    """An SQS event source mapping batch holding these message bodies."""
    return {
        "Records": [
            {
                "messageId": f"msg-{index}",
                "receiptHandle": f"handle-{index}",
                "body": body if isinstance(body, str) else json.dumps(body),
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795437320000"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
            for index, body in enumerate(bodies)
        ]
    }
