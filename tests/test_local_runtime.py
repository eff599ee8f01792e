"""The local runtime plays Lambda and EventBridge: the router's Invoke wakes the scaler for the step it names,
and the schedule runs every step regardless, as EventBridge does on AWS.

A wake must not push the schedule back: with routed work for one step arriving more often than the schedule's
period, a step the router does not wake (segment messages a worker sent, requeued copies, a step idle enough to
scale to zero) would never be scaled.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import boto3
import pytest

from local_runtime.runtime import LocalRuntime
from pipeline_core import aws
from tests.support.aws import s3_notification
from tests.support.pipeline import PipelineStack
from tests.support.workers import wait_for

pytestmark = pytest.mark.integration

PERIOD = 2.0


def test_the_schedule_still_scales_a_step_the_router_does_not_wake_while_it_wakes_another(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack = PipelineStack.create(moto_endpoint)
    people, faces = stack.config["steps"]
    people["scaling_table"] = [[1000, 1]]  # people's few messages want no task: no worker process is started for it
    config = {**stack.config, "scaler_function": "unit-scaler"}
    sqs = stack.client("sqs")
    intake = sqs.create_queue(QueueName=f"intake-{stack.bucket}")["QueueUrl"]
    outputs = {"pipeline_config": json.dumps(config), "intake_queue_url": intake, "jobs_table_stream_arn": stack.stream_arn}
    monkeypatch.setenv("PIPELINE_CONFIG", json.dumps(config))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    runtime = LocalRuntime(outputs, moto_endpoint, tmp_path, scaler_period=PERIOD, poll_seconds=0.2)
    loop = threading.Thread(target=runtime.run, daemon=True)
    feeding = threading.Event()
    s3 = stack.client("s3")

    def feed() -> None:  # a steady stream of uploads: the router sends each to people and wakes the scaler for people
        n = 0
        while not feeding.is_set():
            key = f"uploads/{n}.jpg"
            s3.put_object(Bucket=stack.bucket, Key=key, Body=b"\xff\xd8\xff")
            sqs.send_message(QueueUrl=intake, MessageBody=json.dumps(s3_notification(s3, stack.bucket, key)))
            n += 1
            time.sleep(0.5)

    feeder = threading.Thread(target=feed, daemon=True)
    try:
        loop.start()
        feeder.start()
        wait_for(lambda: _scaled(stack, "people"), 20, what="people scaled once")
        time.sleep(PERIOD)
        # Work reaches faces without the router (segment messages a worker sent, requeued copies): only the schedule sees it.
        for index in range(3):
            sqs.send_message(QueueUrl=faces["queue_url"], MessageBody=json.dumps({"segment": index}))
        ecs = stack.client("ecs")
        desired = lambda: ecs.describe_services(cluster=config["cluster"], services=[faces["service"]])["services"][0]["desiredCount"]  # noqa: E731
        try:
            wait_for(lambda: desired() >= 1, 4 * PERIOD, what="the scheduled run to scale faces out")
        except AssertionError:
            pytest.fail(f"faces has 3 visible messages and desiredCount {desired()} after {4 * PERIOD:g}s (schedule every {PERIOD:g}s)")
    finally:
        feeding.set()
        runtime.stop.set()
        loop.join(60)
        aws.reset()


def _scaled(stack: PipelineStack, step: str) -> bool:
    item = boto3.client(
        "dynamodb", endpoint_url=stack.endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    ).get_item(TableName=stack.config["scaler_state_table"], Key={"step": {"S": step}}, ConsistentRead=True)
    return "Item" in item
