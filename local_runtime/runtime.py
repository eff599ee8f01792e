"""One process that plays the triggers and ECS: intake queue, jobs stream and step dead-letter queues
into the real handlers, the real scaler on a schedule and whenever the router wakes it (its Lambda
invoke, answered here), and worker processes per service."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse

from local_runtime.agent import AgentServer
from local_runtime.events import LambdaContext, sqs_event, stream_records
from local_runtime.tasks import TaskRunner
from pipeline_core import aws

log = logging.getLogger("local_runtime")


class LocalRuntime:
    def __init__(self, outputs: dict[str, Any], endpoint: str, workdir: Path, scaler_period: float = 10.0, poll_seconds: float = 0.5):
        self.outputs, self.endpoint, self.workdir = outputs, endpoint, workdir
        self.scaler_period, self.poll_seconds = scaler_period, poll_seconds
        pipeline = json.loads(outputs["pipeline_config"])
        # Moto has no GetTaskProtection: the scaler counts busy workers from in-flight messages.
        pipeline.update(task_protection_api=False)
        os.environ["PIPELINE_CONFIG"] = json.dumps(pipeline)
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        from scaler import app as scaler_app
        from stream_router import app as router_app
        from stream_router import deadletter

        self.router, self.scaler, self.deadletter = router_app, scaler_app, deadletter
        aws.reset()
        # Moto cannot run functions: the router's asynchronous Invoke of the scaler (the same call, with the
        # same payload, as on AWS) is accepted here, and the loop runs the scaler with it after the batch.
        self.wakes: list[dict[str, Any]] = []
        aws.client("lambda").meta.events.register("before-call.lambda.Invoke", self.accept_invoke)
        self.pipeline = pipeline
        self.sqs = boto3.client("sqs")
        self.streams = boto3.client("dynamodbstreams")
        self.agent = AgentServer()
        credentials = {
            name: os.environ[name] for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION") if name in os.environ
        }
        self.runner = TaskRunner(
            ecs=boto3.client("ecs"),
            cluster=pipeline["cluster"],
            agent=self.agent,
            base_env={"AWS_ENDPOINT_URL": endpoint, **credentials},
            log_dir=workdir,
        )
        self.intake_url = outputs["intake_queue_url"]
        self.intake_arn = self.sqs.get_queue_attributes(QueueUrl=self.intake_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.stream_arn = outputs["jobs_table_stream_arn"]
        self.iterators: dict[str, str | None] = {}
        self.stop = threading.Event()

    # --- triggers -----------------------------------------------------------------------------

    def pump_intake(self) -> int:
        messages = self.sqs.receive_message(
            QueueUrl=self.intake_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageSystemAttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            return 0
        response = self.router.intake_handler(sqs_event(messages, self.intake_arn), LambdaContext("intake"))
        failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        for message in messages:
            if message["MessageId"] not in failed:
                self.sqs.delete_message(QueueUrl=self.intake_url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)

    def pump_stream(self) -> int:
        shards = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
        handled = 0
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id not in self.iterators:
                self.iterators[shard_id] = self.streams.get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
            iterator = self.iterators[shard_id]
            if iterator is None:
                continue
            response = self.streams.get_records(ShardIterator=iterator, Limit=100)
            self.iterators[shard_id] = response.get("NextShardIterator")
            records = stream_records(response["Records"], self.stream_arn)
            if records:
                result = self.router.stream_handler({"Records": records}, LambdaContext("router"))
                if result["batchItemFailures"]:
                    log.error("router could not process records", extra={"failures": result["batchItemFailures"]})
                handled += len(records)
        return handled

    def pump_dead_letters(self) -> int:
        """Each step DLQ into the dead-letter consumer, as its event source mapping would: delete what it settled."""
        handled = 0
        for step in self.pipeline["steps"]:
            if not step.get("dlq_url"):
                continue
            messages = self.sqs.receive_message(
                QueueUrl=step["dlq_url"],
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not messages:
                continue
            try:
                response = self.deadletter.handler(sqs_event(messages, step["dlq_arn"]), LambdaContext("deadletter"))
            except Exception:  # the whole batch failed: Lambda would retry it after the visibility timeout
                log.exception("dead-letter consumer failed the whole batch", extra={"step": step["name"]})
                continue
            failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
            for message in messages:
                if message["MessageId"] not in failed:
                    self.sqs.delete_message(QueueUrl=step["dlq_url"], ReceiptHandle=message["ReceiptHandle"])
            handled += len(messages)
        return handled

    def accept_invoke(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        """Lambda's answer to an ``InvocationType=Event`` invoke: 202, the event queued for the loop."""
        self.wakes.append(json.loads(params["body"] or b"{}"))
        return AWSResponse(self.endpoint, 202, {}, None), {"StatusCode": 202}

    def run_scaler(self, reason: str, event: dict[str, Any] | None = None) -> None:
        result = self.scaler.handler(event or {}, LambdaContext("scaler"))
        for decision in result["decisions"]:
            if decision["changed"]:
                log.info("scale", extra={**decision, "trigger": reason})
        for error in result["errors"]:
            log.error("scaler could not scale a step", extra={**error, "trigger": reason})

    # --- the loop ----------------------------------------------------------------------------------

    def run(self) -> None:
        log.info("local runtime started", extra={"endpoint": self.endpoint, "steps": [s["name"] for s in self.pipeline["steps"]]})
        next_scale = 0.0
        try:
            while not self.stop.is_set():
                self.pump_intake()
                self.pump_dead_letters()
                self.pump_stream()
                while self.wakes:  # a wake scales the step it names; the schedule, as EventBridge's, runs regardless
                    self.run_scaler("woken by routed work", self.wakes.pop(0))
                if time.monotonic() >= next_scale:
                    self.run_scaler("schedule")
                    next_scale = time.monotonic() + self.scaler_period
                for step in self.pipeline["steps"]:
                    self.runner.reconcile(step["name"], step["service"])
                self.stop.wait(self.poll_seconds)
        finally:
            log.info("local runtime stopping: workers get SIGTERM")
            self.runner.stop_all()
            self.agent.close()
