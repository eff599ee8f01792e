"""The emulator applies concurrent writes to one item one at a time, as DynamoDB does (moto alone loses some)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import boto3
import pytest

from local_runtime.emulator import Emulator
from tests.support.aws import REGION

THREADS, UPDATES = 8, 25


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Switch threads every microsecond: makes moto's read-change-write race, seen under CI load, happen every run."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def client(endpoint: str):
    return boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t")


def test_concurrent_updates_of_one_item_are_all_applied(busy_switching: None) -> None:
    with Emulator() as endpoint:
        dynamodb = client(endpoint)
        dynamodb.create_table(
            TableName="jobs",
            KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.put_item(TableName="jobs", Item={"job_id": {"S": "j"}, "segments_done": {"N": "0"}})

        def count() -> None:
            own = client(endpoint)
            for _ in range(UPDATES):
                own.update_item(
                    TableName="jobs",
                    Key={"job_id": {"S": "j"}},
                    UpdateExpression="SET segments_done = segments_done + :one",
                    ConditionExpression="attribute_exists(job_id)",
                    ExpressionAttributeValues={":one": {"N": "1"}},
                )

        threads = [threading.Thread(target=count) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        item = dynamodb.get_item(TableName="jobs", Key={"job_id": {"S": "j"}}, ConsistentRead=True)["Item"]
        assert int(item["segments_done"]["N"]) == THREADS * UPDATES
