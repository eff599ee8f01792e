"""The keepalive's rules, beat by beat, with a controlled clock: SQS's 12-hour cap, leases, protection renewal."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from botocore.stub import Stubber

from local_runtime.agent import AgentServer
from pipeline_core.graph import Graph
from pipeline_core.jobs import ObjectRef
from pipeline_core.jobstore import JobStore
from pipeline_core.jobstore.claims import Claims
from tests.support.aws import StepStack
from tests.support.items import raw_job
from worker.keepalive import SQS_MAX_VISIBILITY, Held, Keepalive, TaskProtection

pytestmark = pytest.mark.integration

OBJ = ObjectRef("bucket", "uploads/k.png", "v1", 1)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def agent() -> Iterator[AgentServer]:
    server = AgentServer()
    yield server
    server.close()


def test_visibility_asked_for_never_passes_twelve_hours_from_the_receive() -> None:
    held = Held("m1", "r1", received_at=1000.0)
    assert held.visibility_left(now=1000.0 + 60, wanted=300) == 300
    assert held.visibility_left(now=1000.0 + SQS_MAX_VISIBILITY - 120, wanted=300) == 120
    assert held.visibility_left(now=1000.0 + SQS_MAX_VISIBILITY + 5, wanted=300) == 0


def test_a_beat_asks_sqs_for_the_capped_visibility_of_every_held_message(stack: StepStack) -> None:
    sqs = stack.aws["sqs"]
    clock = Clock(50_000.0)
    keepalive = Keepalive(sqs, stack.queue_url, JobStore(stack.table), 300, 100, TaskProtection(None), clock=clock)
    keepalive.hold("m1", "r1", received_at=clock.now - 60)
    keepalive.hold("m2", "r2", received_at=clock.now - SQS_MAX_VISIBILITY + 40)
    with Stubber(sqs) as stub:
        expected = {
            "QueueUrl": stack.queue_url,
            "Entries": [
                {"Id": "0", "ReceiptHandle": "r1", "VisibilityTimeout": 300},
                {"Id": "1", "ReceiptHandle": "r2", "VisibilityTimeout": 40},
            ],
        }
        stub.add_response("change_message_visibility_batch", {"Successful": [{"Id": "0"}, {"Id": "1"}], "Failed": []}, expected)
        keepalive.beat()
        stub.assert_no_pending_responses()


def test_a_refused_visibility_change_still_extends_the_lease_and_marks_a_gone_message(stack: StepStack) -> None:
    sqs, store = stack.aws["sqs"], JobStore(stack.table)
    store.create_job(OBJ, ["people"], now=100.0)
    claim = store.claims.claim(OBJ.job_id, "people", "w1", "m1", now=100.0, lease_seconds=300)
    clock = Clock(200.0)
    keepalive = Keepalive(sqs, stack.queue_url, store, 300, 100, TaskProtection(None), clock=clock)
    held = keepalive.hold("m1", "r1", received_at=100.0)
    held.take(claim)
    with Stubber(sqs) as stub:
        failed = {"Id": "0", "SenderFault": True, "Code": "ReceiptHandleIsInvalid", "Message": "expired"}
        stub.add_response("change_message_visibility_batch", {"Successful": [], "Failed": [failed]})
        keepalive.beat()
    assert held.gone
    assert raw_job(store, OBJ.job_id)["steps"]["people"]["lease_expires_at"] == 500.0


def test_a_beat_marks_a_taken_over_claim_lost(stack: StepStack) -> None:
    store = JobStore(stack.table)
    store.create_job(OBJ, ["people"], now=100.0)
    stale = store.claims.claim(OBJ.job_id, "people", "w1", "m1", now=100.0, lease_seconds=30)
    store.claims.claim(OBJ.job_id, "people", "w2", "m1", now=200.0, lease_seconds=30)  # the lease had expired
    keepalive = Keepalive(stack.aws["sqs"], stack.queue_url, store, 300, 100, TaskProtection(None), clock=Clock(210.0))
    held = keepalive.hold("m1", "stale-receipt", received_at=100.0)
    held.take(stale)
    keepalive.beat()
    assert held.lost.is_set()
    assert raw_job(store, OBJ.job_id)["steps"]["people"]["worker_id"] == "w2"


def test_protection_is_renewed_by_the_beats_while_a_long_step_runs(stack: StepStack, agent: AgentServer) -> None:
    clock = Clock(0.0)
    protection = TaskProtection(agent.uri("t1"), expires_minutes=60, clock=clock)
    keepalive = Keepalive(stack.aws["sqs"], stack.queue_url, JobStore(stack.table), 300, 100, protection, clock=clock)
    stack.send("{}")
    message = stack.aws["sqs"].receive_message(QueueUrl=stack.queue_url)["Messages"][0]
    keepalive.hold(message["MessageId"], message["ReceiptHandle"], received_at=0.0)
    protection.set(True)  # on receive
    for minute in range(1, 100):  # a step of 100 minutes, beats every minute
        clock.now = minute * 60.0
        keepalive.beat()
    enabled = [request for request in agent.requests if request["ProtectionEnabled"]]
    assert len(enabled) == 4, "protection of 60 minutes must be renewed every 30 minutes of a 100-minute step"
    assert all(request["ExpiresInMinutes"] == 60 for request in enabled)


def test_a_refused_extension_of_a_finished_claim_does_not_mark_the_next_claim_lost(stack: StepStack) -> None:
    # A beat takes the held claim (a segment, say), and while its extension is on the wire the worker
    # finishes that claim and takes the next one on the same message (the merge). The refusal is about
    # the claim the beat took: the new one must not be marked lost, or its writes are all refused.
    held_now: list[Held] = []

    class SwitchingClaims(Claims):
        def extend_lease(self, claim, until):  # type: ignore[no-untyped-def]
            self.mark_done(claim, 150.0, "s3://bucket/first/result.json", {})  # the worker commits the first claim...
            held_now[0].take(second)  # ...and takes the next, before this extension is answered
            super().extend_lease(claim, until)

    store = JobStore(stack.table)
    store.claims = SwitchingClaims(store.table)
    store.create_job(OBJ, Graph.of([("people", ()), ("faces", ())]), now=100.0)
    first = store.claims.claim(OBJ.job_id, "people", "w1", "m1", now=100.0, lease_seconds=300)
    second = JobStore(stack.table).claims.claim(OBJ.job_id, "faces", "w1", "m1", now=100.0, lease_seconds=300)
    keepalive = Keepalive(stack.aws["sqs"], stack.queue_url, store, 300, 100, TaskProtection(None), clock=Clock(200.0))
    held = keepalive.hold("m1", "r1", received_at=100.0)
    held_now.append(held)
    held.take(first)
    with Stubber(stack.aws["sqs"]) as stub:
        stub.add_response("change_message_visibility_batch", {"Successful": [{"Id": "0"}], "Failed": []})
        keepalive.beat()
    assert held.claim is second and not held.lost.is_set()
