"""AWS calls per file, counted: a real worker behind the fault proxy stays within its budget.

One claim (the job's creation and the claim in one write), one read of the input, one write per output file,
one mark-done; receives and deletes batched, under 0.3 per file together at CONCURRENCY 8. A change that adds
a call per file (a HEAD before the GET, a delete per message) fails here before it shows in a bill.
"""

from __future__ import annotations

import json

import pytest

from bench.costs import LAMBDA_CALLS_PER_FILE
from pipeline_core import aws
from stream_router import app as router_app
from tests.support.aws import CREDENTIALS, StepStack, s3_notification
from tests.support.faultproxy import FaultProxy
from tests.support.lambdas import LambdaContext, sqs_event
from tests.support.media import png
from tests.support.pipeline import PipelineStack
from tests.support.workers import wait_for
from worker.config import DEFAULT_CONCURRENCY

pytestmark = pytest.mark.workers

STEP = "detect"
FILES = 60
BATCHED = ("ReceiveMessage", "DeleteMessage", "DeleteMessageBatch", "ChangeMessageVisibility", "ChangeMessageVisibilityBatch")


def test_an_image_costs_one_claim_one_read_one_write_per_output_one_mark_done_and_a_share_of_batched_sqs_calls(
    moto_endpoint: str, proxy: FaultProxy, spawn
) -> None:
    assert DEFAULT_CONCURRENCY == 8, "the budget is set at CONCURRENCY 8"
    stack = StepStack.create(moto_endpoint, visibility_timeout=60)
    keys = [f"uploads/count/{index:03d}.png" for index in range(FILES)]
    for index, key in enumerate(keys):
        stack.put(key, png(16 + index % 8, 16, (index % 256, 0, 0)))
    events = [json.dumps(stack.s3_event(key)) for key in keys]
    for start in range(0, FILES, 10):
        entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(events[start : start + 10])]
        stack.aws["sqs"].send_message_batch(QueueUrl=stack.queue_url, Entries=entries)
    # media-info writes one output file (result.json). The heartbeat is paid per held message per beat, not per
    # file: it is out of this count (HEARTBEAT_SECONDS past the run), and tests/test_keepalive.py batches it.
    env = stack.worker_env(
        STEP,
        AWS_ENDPOINT_URL=proxy.url,
        PROCESSOR="media-info",
        CONCURRENCY=DEFAULT_CONCURRENCY,
        HEARTBEAT_SECONDS=50,
        WAIT_TIME_SECONDS=5,
    )
    worker = spawn(env)
    wait_for(lambda: len(worker.events("step done")) == FILES, 120, what="every file done")
    wait_for(lambda: stack.counts() == (0, 0), 30, what="every message deleted")
    per_file = {api: count / FILES for api, count in proxy.calls.items()}

    assert per_file.pop("PutItem") == 1, "the job's creation and its claim are one conditional put"
    assert per_file.pop("UpdateItem") == 1, "one mark-done, nothing else per file in the jobs table"
    assert per_file.pop("S3.GET") == 1, "one read of the input (its head comes with the GET)"
    assert per_file.pop("S3.PUT") == 1, "one write per output file"
    batched = {api: per_file.pop(api) for api in BATCHED if api in per_file}
    assert not per_file, f"calls outside the budget: {per_file}"
    assert "DeleteMessage" not in batched and "ChangeMessageVisibility" not in batched, batched
    assert sum(batched.values()) < 0.3, f"receives, deletes and visibility changes per file: {batched}"


LAMBDA_FILES = 20


def test_the_deployed_lambdas_add_per_file_what_the_cost_table_prices(
    moto_endpoint: str, proxy: FaultProxy, spawn, monkeypatch, request
) -> None:
    """The benchmarks count a worker fed S3 events straight; the deployed module puts intake and the router in between.

    Here the real handlers run in this process and a real worker in its own, all through the proxy, on a one-step
    pipeline that announces each end on a topic: the calls per file beyond the worker-only count above must be
    ``bench.costs.LAMBDA_CALLS_PER_FILE``, the table the cost per file adds for them.
    """
    pipeline = PipelineStack.create(moto_endpoint)
    step = pipeline.config["steps"][0]
    topic = pipeline.client("sns").create_topic(Name=f"ends-{pipeline.bucket}")["TopicArn"]
    config = {**pipeline.config, "steps": [step], "notify_topic_arn": topic}
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    monkeypatch.setenv("PIPELINE_CONFIG", json.dumps(config))
    aws.reset()
    request.addfinalizer(aws.reset)  # the handlers' clients point at this test's proxy: none outlives it
    s3 = pipeline.client("s3")
    keys = [f"uploads/deployed/{index:03d}.png" for index in range(LAMBDA_FILES)]
    for index, key in enumerate(keys):
        s3.put_object(Bucket=pipeline.bucket, Key=key, Body=png(16 + index % 8, 16, (0, index % 256, 0)))
    events = [s3_notification(s3, pipeline.bucket, key) for key in keys]

    def route() -> None:
        assert router_app.stream_handler(pipeline.new_stream_event(), LambdaContext()) == {"batchItemFailures": []}

    for start in range(0, LAMBDA_FILES, 10):  # the intake queue's event source mapping: batches of ten
        assert router_app.intake_handler(sqs_event(*events[start : start + 10]), LambdaContext()) == {"batchItemFailures": []}
    route()  # the jobs' creation: each is sent to its step
    worker = spawn(
        {
            **CREDENTIALS,
            "AWS_ENDPOINT_URL": proxy.url,
            "QUEUE_URL": step["queue_url"],
            "JOBS_TABLE": config["jobs_table"],
            "STEP_NAME": step["name"],
            "RESULTS_BUCKET": pipeline.bucket,
            "RESULTS_PREFIX": "results/",
            "PROCESSOR": "media-info",
            "CONCURRENCY": str(DEFAULT_CONCURRENCY),
            "HEARTBEAT_SECONDS": "50",
            "WAIT_TIME_SECONDS": "5",
        }
    )
    wait_for(lambda: len(worker.events("step done")) == LAMBDA_FILES, 120, what="every file done")
    route()  # the ends: recorded, claimed for announcement, published
    statuses = {
        pipeline.client("dynamodb").get_item(TableName=config["jobs_table"], Key={"job_id": {"S": job}})["Item"]["status"]["S"]
        for job in {entry["job_id"] for entry in worker.events("step done")}
    }
    assert statuses == {"succeeded"}
    wait_for(lambda: not pipeline.drain(step["name"]), 30, what="every message deleted")

    per_file = {api: count / LAMBDA_FILES for api, count in proxy.calls.items()}
    for api in BATCHED:
        per_file.pop(api, None)  # the worker's batched SQS calls: counted in the test above
    worker_only = {"PutItem": 1.0, "UpdateItem": 1.0, "S3.GET": 1.0, "S3.PUT": 1.0}  # the test above: what the benches count
    added = {api: per_file.get(api, 0.0) - worker_only.get(api, 0.0) for api in per_file.keys() | worker_only.keys()}
    assert {api: count for api, count in added.items() if count} == dict(LAMBDA_CALLS_PER_FILE), per_file
