"""The job protocol, model-checked: Hypothesis drives the real JobStore conditions (moto, in process), the protocol's
decisions and the dead-letter consumer through any interleaving of three workers (claim, heartbeat, finish, fail,
crash, pause past the lease and resume), SQS redelivery and its receive limit, the DLQ and gpupipe retry, on whole
and split steps; the invariants (tests/support/protocol_model.INVARIANTS) after every step and at quiescence.
``make check-protocol`` runs it at a larger budget. Below, each bug the model check or the worker tests once found is
a named regression example."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from pipeline_core.records import JobRecord
from tests.support.protocol_machine import ProtocolMachine
from tests.support.protocol_model import MAX_RECEIVES, VISIBILITY, Model, dynamodb_table

pytestmark = pytest.mark.integration

TestProtocol = ProtocolMachine.TestCase
TestProtocol.settings = settings(
    max_examples=8, stateful_step_count=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)


def ended(model: Model) -> JobRecord:
    job = model.quiesce()
    model.check()
    return job


@pytest.fixture
def table():
    with dynamodb_table() as table:
        yield table


def split(model: Model, by: int = 0) -> None:
    """Worker ``by`` claims the step, records the split and sends every segment's message."""
    model.receive(by, model.pick(None))
    model.work(by)  # record_split
    model.work(by)  # the sends


def segment(model: Model, worker: int, index: int, finish: bool = True) -> None:
    model.receive(worker, model.pick(index))
    if finish:
        model.work(worker)


def test_a_split_video_is_merged_once_by_the_worker_whose_count_completed_the_set(table) -> None:
    model = Model(table, segments=3)
    split(model)
    for index in range(3):
        segment(model, index % 3, index)
        model.check()
    assert model.workers[2].task is not None and model.workers[2].task.claim.merging  # the last count claimed the merge
    model.work(2)
    assert ended(model).status == "succeeded" and model.merges == 1


def test_two_segments_finishing_together_both_try_the_merge_and_one_merges(table) -> None:
    """segments finishing together; the completing one recorded nothing, or both tries failed."""
    model = Model(table, segments=2)
    split(model)
    segment(model, 0, 0, finish=False)
    segment(model, 1, 1, finish=False)
    model.work(0)
    model.work(1)
    assert ended(model).status == "succeeded" and model.merges == 1


def test_the_step_message_dead_lettered_while_the_last_segment_is_about_to_merge_leaves_the_job_to_it(table) -> None:
    """a job whose last segment's message was about to merge was failed. Segment 1's worker
    counted its segment and died before claim_merge; the step's message (its splitter died before deleting it, on
    every receive) is dead-lettered meanwhile."""
    model = Model(table, segments=2)
    step_message = model.visible()[0]
    split(model)
    segment(model, 1, 0)
    segment(model, 2, 1, finish=False)
    model.work(2, outcome=3)  # counted, then killed before claim_merge: its message comes back
    model.dlq.append(step_message)
    model.dead_letter()
    assert model.job().status == "running", model.step().error
    model.tick(VISIBILITY + 1)
    segment(model, 0, 1, finish=False)  # segment 1's message: its segment is done, every segment done: it merges
    assert model.workers[0].task.claim.merging
    model.work(0)
    assert ended(model).status == "succeeded" and model.merges == 1


def test_a_retried_merge_whose_step_message_is_dead_lettered_before_it_merged_fails_the_job(table) -> None:
    """a retried merge resumed but never claimed never ended."""
    model = Model(table, segments=2)
    split(model)
    segment(model, 0, 0)
    segment(model, 1, 1)
    model.work(1, outcome=2)  # the merge fails for good
    assert model.job().status == "failed"
    model.retry()
    message = model.visible()[-1]
    message.receives = MAX_RECEIVES
    model.receive(0, model.pick(None))  # moved to the DLQ on this receive
    model.dead_letter()
    assert ended(model).status == "failed"


def test_a_retried_merge_whose_worker_is_killed_is_merged_by_the_step_messages_next_receive(table) -> None:
    """the step's own message came back 'held by this message' and postponed itself forever."""
    model = Model(table, segments=2)
    split(model)
    segment(model, 0, 0)
    segment(model, 1, 1)
    model.work(1, outcome=2)
    model.retry()
    model.receive(0, model.pick(None))  # resumes, every segment done: claims the merge
    assert model.workers[0].task.claim.merging
    model.crash(0)
    model.tick(VISIBILITY + 1)
    assert ended(model).status == "succeeded" and model.merges == 1


def test_gpupipe_retry_leaves_a_segment_a_live_worker_holds_and_no_second_worker_runs_it(table) -> None:
    """retry put a segment a live worker held back to pending."""
    model = Model(table, segments=2)
    split(model)
    segment(model, 0, 0, finish=False)  # held, lease live
    segment(model, 1, 1, finish=False)
    model.work(1, outcome=2)  # segment 1 fails the step
    model.retry()
    model.receive(2, model.pick(None))  # resumes: sends segment 1 again, not segment 0
    assert sorted(m.segment for m in model.visible()) == [1]
    model.work(0)
    assert ended(model).status == "succeeded"
    assert sum(kind == "segment" and seg == 0 for kind, seg, _ in model.commits) == 1


def test_a_paused_worker_that_lost_its_claim_commits_nothing(table) -> None:
    model = Model(table)
    model.receive(0)
    model.pause(0)
    model.tick(VISIBILITY + 1)
    model.receive(1)  # takes the expired lease over
    model.work(1)
    model.resume(0)
    model.work(0)  # its mark_done is refused: it wrote only its own attempt's location
    model.check()
    assert ended(model).status == "succeeded" and [c for c in model.commits if c[0] == "done"] == [("done", None, 2)]


def test_the_last_segments_holder_paused_past_its_lease_twice_then_the_merge_does_not_fail_with_its_budget_unspent(
    table,
) -> None:
    """Reproduced with real workers: the holder of the last segment paused past its lease twice (taken over
    each time), then one pause of the merging worker: the message that completed the set reached the DLQ and the job
    failed "merge: moved to the dead-letter queue after 3 receives" with every segment done and 0 of 5 failures spent.
    Receives that ended LOST (takeovers, counted in the job item's budget) must not end the merge."""
    model = Model(table, segments=2)
    split(model)
    segment(model, 0, 0)
    for holder in (1, 2):  # receive 1, then 2: each holder paused past its lease, taken over by the next
        segment(model, holder, 1, finish=False)
        model.pause(holder)
        model.tick(VISIBILITY + 1)
    segment(model, 0, 1, finish=False)  # receive 3 takes it over, counts it, claims the merge...
    model.work(0)
    assert model.workers[0].task.claim.merging
    model.pause(0)  # ... and pauses past the merge's lease
    model.tick(VISIBILITY + 1)
    for holder in (1, 2):
        model.crash(holder)
    model.receive(1, model.pick(1))  # its fourth receive: SQS moves it to the DLQ
    assert [m.segment for m in model.dlq] == [1]
    model.dead_letter()
    job = ended(model)
    assert job.status == "succeeded", job.steps["detect"].error
    assert model.merges == 1


def test_a_splitter_killed_after_sqs_accepted_the_segment_messages_on_its_last_receive_does_not_fail_the_job(table) -> None:
    """Reproduced with real workers: the splitter killed after SQS accepted the segment messages but before
    their ids were recorded, on the step message's last receive: the dead-letter consumer failed a job all of whose
    segments have messages."""
    model = Model(table, segments=2)
    step_message = model.visible()[0]
    step_message.receives = MAX_RECEIVES - 1
    model.receive(0, model.pick(None))  # its last receive
    model.work(0)  # record_split
    for index in range(2):
        model.send(index)  # SQS accepted the segment messages; the splitter is killed before recording their ids
    model.crash(0)
    model.tick(VISIBILITY + 1)
    model.receive(1, model.pick(None))  # the step message is moved to the DLQ
    assert model.dlq
    model.dead_letter()
    job = ended(model)
    assert job.status == "succeeded", job.steps["detect"].error
