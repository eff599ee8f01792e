"""The emulator applies concurrent writes to one item one at a time, as DynamoDB does (moto alone loses some),
without letting one slow client hold every other DynamoDB request up."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ReadTimeoutError

from local_runtime.emulator import Emulator
from tests.support.aws import REGION

pytestmark = pytest.mark.integration

THREADS, UPDATES = 8, 25


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Switch threads every microsecond: makes moto's read-change-write race, seen under CI load, happen every run."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def client(endpoint: str, config: Config | None = None):
    credentials = {"aws_access_key_id": "t", "aws_secret_access_key": "t"}
    return boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION, config=config, **credentials)


def test_concurrent_updates_of_one_item_are_all_applied(busy_switching: None) -> None:
    with Emulator() as endpoint:
        dynamodb = client(endpoint)
        dynamodb.create_table(
            TableName="atomicity",
            KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.put_item(TableName="atomicity", Item={"job_id": {"S": "j"}, "segments_done": {"N": "0"}})

        def count() -> None:
            own = client(endpoint)
            for _ in range(UPDATES):
                own.update_item(
                    TableName="atomicity",
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
        item = dynamodb.get_item(TableName="atomicity", Key={"job_id": {"S": "j"}}, ConsistentRead=True)["Item"]
        assert int(item["segments_done"]["N"]) == THREADS * UPDATES


def test_a_dynamodb_request_with_a_stalled_body_does_not_stop_every_other_dynamodb_request() -> None:
    with Emulator() as endpoint:
        dynamodb = client(endpoint, Config(read_timeout=3, retries={"max_attempts": 1}))
        dynamodb.create_table(
            TableName="stalled-body",
            KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        host, port = endpoint.removeprefix("http://").split(":")
        stalled = socket.create_connection((host, int(port)))
        try:
            stalled.sendall(
                (
                    "POST / HTTP/1.1\r\n"
                    f"Host: {host}:{port}\r\n"
                    "X-Amz-Target: DynamoDB_20120810.GetItem\r\n"
                    "Content-Type: application/x-amz-json-1.0\r\n"
                    "Authorization: AWS4-HMAC-SHA256 Credential=t/20260101/us-east-1/dynamodb/aws4_request, "
                    "SignedHeaders=host, Signature=0\r\n"
                    "Content-Length: 64\r\n\r\n"
                ).encode()
            )  # the headers went out; the body has not yet
            time.sleep(0.5)
            started = time.monotonic()
            try:
                dynamodb.describe_table(TableName="stalled-body")
            except ReadTimeoutError:
                raise AssertionError(
                    f"DescribeTable got no answer in {time.monotonic() - started:.1f}s: another client's unfinished request holds the lock"
                ) from None
        finally:
            stalled.close()


def test_s3_notifications_name_the_object_version_in_a_versioned_bucket_as_aws_does() -> None:
    """moto's own notifications carry no versionId; AWS's do for a versioned bucket (and none for an unversioned one)."""
    import json

    with Emulator() as endpoint:
        credentials = {"endpoint_url": endpoint, "region_name": REGION, "aws_access_key_id": "t", "aws_secret_access_key": "t"}
        s3, sqs = boto3.client("s3", **credentials), boto3.client("sqs", **credentials)
        queue = sqs.create_queue(QueueName="events")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        versions = {}
        for bucket, versioned in (("versioned", True), ("plain", False)):
            s3.create_bucket(Bucket=bucket)
            if versioned:
                s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
            s3.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]}
            )
            versions[bucket] = [s3.put_object(Bucket=bucket, Key="k", Body=body).get("VersionId") for body in (b"1", b"2")]
        seen: dict[str, list] = {"versioned": [], "plain": []}
        for _ in range(10):
            for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
                for record in json.loads(message["Body"]).get("Records", []):
                    seen[record["s3"]["bucket"]["name"]].append(record["s3"]["object"].get("versionId"))
            if len(seen["versioned"]) + len(seen["plain"]) == 4:
                break
        assert sorted(seen["versioned"], key=str) == sorted(versions["versioned"]) and all(versions["versioned"])
        assert seen["plain"] == [None, None]


def test_a_ranged_get_answers_exactly_the_range_as_s3_does(moto_endpoint: str) -> None:
    """The emulator reads only the range of a ranged GET (local_runtime.emulator): the answer is S3's all the same."""
    import os

    from botocore.exceptions import ClientError

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)
    bucket = f"ranges-{os.getpid()}-{time.monotonic_ns()}"
    s3.create_bucket(Bucket=bucket)
    body = os.urandom(3 * 1024 * 1024 + 5)
    etag = s3.put_object(Bucket=bucket, Key="k", Body=body)["ETag"]
    for header, expected, content_range in [
        ("bytes=0-9", body[:10], f"bytes 0-9/{len(body)}"),
        ("bytes=1048576-2097151", body[1048576:2097152], f"bytes 1048576-2097151/{len(body)}"),
        ("bytes=3145700-", body[3145700:], f"bytes 3145700-{len(body) - 1}/{len(body)}"),
        ("bytes=-7", body[-7:], f"bytes {len(body) - 7}-{len(body) - 1}/{len(body)}"),
        ("bytes=3145000-99999999", body[3145000:], f"bytes 3145000-{len(body) - 1}/{len(body)}"),
    ]:
        answer = s3.get_object(Bucket=bucket, Key="k", Range=header, IfMatch=etag)
        assert answer["Body"].read() == expected, header
        assert answer["ContentRange"] == content_range and answer["ContentLength"] == len(expected)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == body  # not ranged: the whole object
    with pytest.raises(ClientError, match="InvalidRange"):
        s3.get_object(Bucket=bucket, Key="k", Range=f"bytes={len(body)}-")
    with pytest.raises(ClientError, match=r"PreconditionFailed|412"):
        s3.get_object(Bucket=bucket, Key="k", Range="bytes=0-9", IfMatch='"0123456789abcdef0123456789abcdef"')


def test_a_receive_still_drops_messages_past_the_queues_retention_period(moto_endpoint: str) -> None:
    """The emulator checks retention against the queue's period alone (local_runtime.emulator: moto computed every
    attribute of the queue, walking all of its messages, for each message received): the answer is moto's."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sqs.models import sqs_backends

    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name=REGION)
    received = {}
    for age in (61, 30):  # seconds since it was sent, against a 60 s retention period
        name = f"retention-{age}-{time.monotonic_ns()}"
        url = sqs.create_queue(QueueName=name, Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody=f"{age} s old")
        [message] = sqs_backends[DEFAULT_ACCOUNT_ID][REGION].queues[name]._messages
        message.sent_timestamp -= age * 1000
        received[age] = [m["Body"] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])]
    assert received == {61: [], 30: ["30 s old"]}


def test_the_emulator_does_not_list_motos_folders_for_every_request(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """moto found each request's service by listing its package's folders anew (3 ms of CPU a call); the emulator lists
    them once. The requests still reach their services."""
    import os

    import moto

    sqs, dynamodb = boto3.client("sqs", endpoint_url=moto_endpoint, region_name=REGION), client(moto_endpoint)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)
    for first in (sqs.list_queues, dynamodb.list_tables, s3.list_buckets):
        first()  # each service's first request: whatever is listed once is listed by now
    listed: list[str] = []
    real, package = os.listdir, os.path.dirname(moto.__file__)
    monkeypatch.setattr(os, "listdir", lambda path=".": listed.append(str(path)) or real(path))
    sqs.list_queues()
    dynamodb.list_tables()
    s3.list_buckets()
    assert [path for path in listed if path.startswith(package)] == []
