"""The resources one pipeline step uses, created in a moto server with boto3."""

from __future__ import annotations

import json
import socket
import uuid
from dataclasses import dataclass, replace
from typing import Any, ClassVar
from urllib.parse import quote_plus

import boto3

from pipeline_core.jobs import ObjectRef, split_s3_uri
from pipeline_core.jobstore import JobStore
from tests.support.items import raw_job, raw_segments

REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clients(endpoint: str) -> dict[str, Any]:
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    return {
        "s3": session.client("s3", endpoint_url=endpoint),
        "sqs": session.client("sqs", endpoint_url=endpoint),
        "dynamodb": session.resource("dynamodb", endpoint_url=endpoint),
    }


def s3_notification(s3: Any, bucket: str, *keys: str, version_id: bool = True) -> dict[str, Any]:
    """The notification S3 sends for these existing objects, keys encoded as S3 encodes them.

    In a versioned bucket S3 names the version (``versionId``); moto's own notifications do not, so a
    test that repeats one of moto's events passes ``version_id=False``.
    """
    records = []
    for key in keys:
        head = s3.head_object(Bucket=bucket, Key=key)
        version = {"versionId": head["VersionId"]} if version_id and head.get("VersionId") not in (None, "null") else {}
        records.append(
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": REGION,
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {
                        "key": quote_plus(key, safe="/"),
                        "size": head["ContentLength"],
                        "eTag": head["ETag"].strip('"'),
                        **version,
                        "sequencer": "0055AED6DCD90281E5",
                    },
                },
            }
        )
    return {"Records": records}


def _step_queues(sqs: Any, name: str, visibility_timeout: int, max_receive_count: int) -> tuple[str, str]:
    """A step queue named ``name`` and its DLQ: (queue URL, DLQ URL)."""
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}),
        },
    )["QueueUrl"]
    return queue_url, dlq_url


@dataclass
class StepStack:
    """A bucket, a jobs table, and one step's queue with its DLQ."""

    concurrency: ClassVar[int] = 1  # CONCURRENCY of the workers started from worker_env(); a suite may run at several

    endpoint: str
    bucket: str
    table_name: str
    queue_url: str
    dlq_url: str
    max_receive_count: int  # SQS's budget of receives that end with no answer (kills, hangs), then the DLQ
    visibility_timeout: int
    aws: dict[str, Any]
    max_attempts: int = 3  # the job item's budget of attempts that failed transiently (MAX_ATTEMPTS)

    @classmethod
    def create(cls, endpoint: str, *, visibility_timeout: int = 30, max_receive_count: int = 3, max_attempts: int = 3) -> StepStack:
        aws = clients(endpoint)
        suffix = uuid.uuid4().hex[:8]
        bucket, table_name = f"media-{suffix}", f"jobs-{suffix}"
        aws["s3"].create_bucket(Bucket=bucket)
        aws["dynamodb"].create_table(
            TableName=table_name,
            KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        queue_url, dlq_url = _step_queues(aws["sqs"], f"step-{suffix}", visibility_timeout, max_receive_count)
        return cls(endpoint, bucket, table_name, queue_url, dlq_url, max_receive_count, visibility_timeout, aws, max_attempts)

    def beside(self, name: str, *, visibility_timeout: int | None = None, max_receive_count: int | None = None) -> StepStack:
        """Another step's queue and DLQ (``name`` in their names) on this stack's bucket and jobs table: a second
        step whose workers and dead letters run beside this one's, as a pipeline's steps do."""
        visibility = visibility_timeout or self.visibility_timeout
        receives = max_receive_count or self.max_receive_count
        queue_url, dlq_url = _step_queues(self.aws["sqs"], f"step-{self.table_name.removeprefix('jobs-')}-{name}", visibility, receives)
        return replace(self, queue_url=queue_url, dlq_url=dlq_url, visibility_timeout=visibility, max_receive_count=receives)

    @property
    def table(self) -> Any:
        return self.aws["dynamodb"].Table(self.table_name)

    def put(self, key: str, body: bytes) -> dict[str, Any]:
        return self.aws["s3"].put_object(Bucket=self.bucket, Key=key, Body=body)

    def s3_event(self, *keys: str) -> dict[str, Any]:
        """The notification S3 sends for these objects of this bucket."""
        return s3_notification(self.aws["s3"], self.bucket, *keys)

    def send(self, body: dict[str, Any] | str) -> str:
        text = body if isinstance(body, str) else json.dumps(body)
        return self.aws["sqs"].send_message(QueueUrl=self.queue_url, MessageBody=text)["MessageId"]

    def counts(self, queue_url: str | None = None) -> tuple[int, int]:
        """(visible, in flight) messages on a queue."""
        attrs = self.aws["sqs"].get_queue_attributes(
            QueueUrl=queue_url or self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def result(self, key: str) -> dict[str, Any]:
        body = self.aws["s3"].get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return json.loads(body)

    def object_ref(self, key: str) -> ObjectRef:
        """The current version of ``key``, as its S3 notification names it."""
        head = self.aws["s3"].head_object(Bucket=self.bucket, Key=key)
        if head.get("VersionId") not in (None, "null"):
            return ObjectRef(self.bucket, key, head["VersionId"], head["ContentLength"], versioned=True)
        return ObjectRef(self.bucket, key, head["ETag"].strip('"'), head["ContentLength"])

    def job(self, key: str) -> dict[str, Any]:
        """The job item of the current version of ``key`` ({} while there is none), each split step's segment items
        joined in as ``segments`` ({"<index>": item}: a view for the tests, not what the job item holds)."""
        store = JobStore(self.table)
        job = raw_job(store, self.object_ref(key).job_id) or {}
        for name, step in (job.get("steps") or {}).items():
            if step.get("segment_count"):
                step["segments"] = {
                    str(i): item for i, item in raw_segments(store, job["job_id"], name, int(step["segment_count"])).items()
                }
        return job

    def committed_prefix(self, job: dict[str, Any], step: str) -> str:
        """The key prefix of the outputs the job item records as the step's committed ones."""
        bucket, key = split_s3_uri(job["steps"][step]["result_file"])
        assert bucket == self.bucket
        return key.rsplit("/", 1)[0] + "/"

    def committed_result(self, job: dict[str, Any], step: str) -> dict[str, Any]:
        """The result document the job item records as the step's committed one."""
        return self.result(self.committed_prefix(job, step) + "result.json")

    def worker_env(self, step: str = "detect", **overrides: Any) -> dict[str, str]:
        env = {
            **CREDENTIALS,
            "AWS_ENDPOINT_URL": self.endpoint,
            "QUEUE_URL": self.queue_url,
            "JOBS_TABLE": self.table_name,
            "STEP_NAME": step,
            "RESULTS_BUCKET": self.bucket,
            "RESULTS_PREFIX": "results/",
            "VISIBILITY_TIMEOUT": str(self.visibility_timeout),
            "MAX_ATTEMPTS": str(self.max_attempts),
            "WAIT_TIME_SECONDS": "1",
            "CONCURRENCY": str(self.concurrency),
            "RETRY_DELAY_SECONDS": "0",
        }
        env.update({name: str(value) for name, value in overrides.items()})
        return env
