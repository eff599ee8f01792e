"""A two-step pipeline's AWS resources in moto, for the Lambda handler tests."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import boto3

from tests.support.aws import REGION
from tests.support.lambdas import read_stream

STEPS = ("people", "faces")
MAX_RECEIVE_COUNT = 2


@dataclass
class PipelineStack:
    endpoint: str
    config: dict[str, Any]
    stream_arn: str
    bucket: str
    seen: set[str]

    @classmethod
    def create(cls, endpoint: str, idle_seconds: float = 600) -> PipelineStack:
        kw = {"endpoint_url": endpoint, "region_name": REGION, "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        suffix = uuid.uuid4().hex[:8]
        ddb, sqs, ecs, s3 = (boto3.client(name, **kw) for name in ("dynamodb", "sqs", "ecs", "s3"))
        table = ddb.create_table(
            TableName=f"jobs-{suffix}",
            KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )["TableDescription"]
        ddb.create_table(
            TableName=f"scaler-{suffix}",
            KeySchema=[{"AttributeName": "step", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "step", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        cluster = f"cluster-{suffix}"
        ecs.create_cluster(clusterName=cluster)
        ecs.register_task_definition(family=f"worker-{suffix}", containerDefinitions=[{"name": "worker", "image": "w", "memory": 512}])
        bucket = f"media-{suffix}"
        s3.create_bucket(Bucket=bucket)
        steps = []
        for name in STEPS:
            dlq_url = sqs.create_queue(QueueName=f"{name}-{suffix}-dlq")["QueueUrl"]
            dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT})
            queue_url = sqs.create_queue(QueueName=f"{name}-{suffix}", Attributes={"RedrivePolicy": redrive})["QueueUrl"]
            service = f"{name}-{suffix}"
            ecs.create_service(cluster=cluster, serviceName=service, taskDefinition=f"worker-{suffix}", desiredCount=0)
            steps.append(
                {
                    "name": name,
                    "queue_url": queue_url,
                    "service": service,
                    "scaling_table": [[1, 1], [100, 2]],
                    "min_tasks": 0,
                    "max_tasks": 2,
                    "idle_seconds": idle_seconds,
                    "dlq_url": dlq_url,
                    "dlq_arn": dlq_arn,
                    "max_receive_count": MAX_RECEIVE_COUNT,
                }
            )
        config = {
            "steps": steps,
            "jobs_table": table["TableName"],
            "cluster": cluster,
            "scaler_state_table": f"scaler-{suffix}",
            "input_prefix": "uploads/",
            "allowed_suffixes": [".jpg", ".png", ".mp4"],
            "task_protection_api": False,
        }
        return cls(endpoint, config, table["LatestStreamArn"], bucket, set())

    def client(self, name: str) -> Any:
        return boto3.client(
            name, endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
        )

    @property
    def env(self) -> dict[str, str]:
        return {"PIPELINE_CONFIG": json.dumps(self.config)}

    def queue_url(self, step: str) -> str:
        return next(s["queue_url"] for s in self.config["steps"] if s["name"] == step)

    def step_config(self, step: str) -> dict[str, Any]:
        return next(s for s in self.config["steps"] if s["name"] == step)

    def new_stream_event(self) -> dict[str, Any]:
        """The stream records not yet handed to the router, as one Lambda event."""
        records = [r for r in read_stream(self.client("dynamodbstreams"), self.stream_arn) if r["eventID"] not in self.seen]
        self.seen.update(r["eventID"] for r in records)
        return {"Records": records}

    def drain(self, step: str) -> list[dict[str, Any]]:
        """Receive and delete every message on a step's queue; return their bodies."""
        sqs, bodies = self.client("sqs"), []
        while True:
            messages = sqs.receive_message(QueueUrl=self.queue_url(step), MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return bodies
            for message in messages:
                bodies.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.queue_url(step), ReceiptHandle=message["ReceiptHandle"])
