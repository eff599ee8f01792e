"""AWS calls per file, counted: a real worker behind the fault proxy stays within the budget issue 23 names.

One claim (the job's creation and the claim in one write), one read of the input, one write per output file,
one mark-done; receives and deletes batched, under 0.3 per file together at CONCURRENCY 8. A change that adds
a call per file (a HEAD before the GET, a delete per message) fails here before it shows in a bill.
"""

from __future__ import annotations

import json

import pytest

from tests.support.aws import StepStack
from tests.support.faultproxy import FaultProxy
from tests.support.media import png
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
