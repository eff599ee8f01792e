"""The job protocol in one place (pipeline_core.protocol): the table is whole and consistent, the doc is generated
from it, and the decisions the worker, the dead-letter consumer and gpupipe carry out are pure functions."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from pipeline_core import jobstore
from pipeline_core.jobs import StepState
from pipeline_core.jobstore import JobStore
from pipeline_core.protocol import (
    GUARDS,
    JOB_TRANSITIONS,
    TRANSITIONS,
    Event,
    OnDeadLetter,
    OnRefused,
    OnRetry,
    Phase,
    SegmentPhase,
    SegmentRecord,
    StepRecord,
    Unclaimable,
    can_move,
    classify_unclaimable,
    needs_step_message,
    next_phase,
    on_refused,
    on_retry,
    on_segment_dead_letter,
    on_step_dead_letter,
    segment_records,
    segment_reset_on_retry,
    unclaimed,
)
from tools import lifecycle_doc

pytestmark = pytest.mark.unit


def step(state: str = "running", status: str = "running", **fields: object) -> StepRecord:
    record = StepRecord.parse({"status": status, "steps": {"s": {"state": state, **fields}}}, "s")
    assert record is not None
    return record


SPLIT = {"segment_count": 3, "segments_done": 1, "message_id": "m-step"}
ALL_DONE = {"segment_count": 3, "segments_done": 3, "message_id": "m-step"}


def test_the_docs_picture_and_tables_are_the_ones_the_table_generates() -> None:
    text = lifecycle_doc.DOC.read_text()
    assert lifecycle_doc.updated(text) == text, "run python tools/lifecycle_doc.py"
    assert "```mermaid" in text and "split --> waiting_to_merge" in text


def test_every_transition_cites_known_guards_and_a_jobstore_method_and_every_guard_is_used() -> None:
    cited = {g for t in (*TRANSITIONS, *JOB_TRANSITIONS) for g in t.guards}
    assert cited <= set(GUARDS)
    for t in (*TRANSITIONS, *JOB_TRANSITIONS):
        assert callable(getattr(JobStore, t.code, None)), t
    used = set(re.findall(r"guard\(['\"](\w+)['\"]", inspect.getsource(jobstore)))
    assert used <= set(GUARDS) and set(GUARDS) <= used | cited, set(GUARDS) - used - cited
    assert set(GUARDS) - used == set(), f"guards no condition is built from: {set(GUARDS) - used}"


def test_every_condition_the_job_store_writes_is_built_from_named_guards() -> None:
    """No condition spelled inline: each ConditionExpression is guard(...) or an expression of guards (the claim's
    ways, the merge's lease), never a string literal of its own."""
    source = inspect.getsource(jobstore)
    literal = re.findall(r"ConditionExpression[\"']?\s*[=:]\s*(f?[\"'][^\n]*)", source)
    inline = [text for text in literal if "guard(" not in text and "_waits_on_message(" not in text]
    assert inline == [], inline


def test_every_phase_is_reachable_and_from_every_phase_the_step_can_end() -> None:
    def reachable(start: Phase) -> set[Phase]:
        seen, todo = {start}, [start]
        while todo:
            here = todo.pop()
            for t in TRANSITIONS:
                if t.source == here and t.target not in seen:
                    seen.add(t.target)
                    todo.append(t.target)
        return seen

    assert reachable(Phase.PENDING) == set(Phase)
    for phase in Phase:
        assert {Phase.SUCCEEDED, Phase.FAILED} & reachable(phase), phase
    assert next_phase(Phase.SUCCEEDED, Event.RETRY) == frozenset()  # done is final
    assert next_phase(Phase.SPLIT, Event.LAST_SEGMENT_DONE) == {Phase.WAITING_TO_MERGE}


@pytest.mark.parametrize(
    ("old", "new", "allowed"),
    [
        (Phase.PENDING, Phase.RUNNING, True),
        (Phase.RUNNING, Phase.SUCCEEDED, True),
        (Phase.RUNNING, Phase.FAILED, True),
        (Phase.RUNNING, Phase.PENDING, True),
        (Phase.PENDING, Phase.SUCCEEDED, False),
        (Phase.SUCCEEDED, Phase.RUNNING, False),
        (Phase.PENDING, Phase.FAILED, True),  # dead-lettered before any claim
        (Phase.FAILED, Phase.PENDING, True),  # gpupipe retry
        (Phase.FAILED, Phase.SUCCEEDED, False),
        (Phase.SUCCEEDED, Phase.FAILED, False),
        (Phase.SPLIT, Phase.SUCCEEDED, False),  # only the merge commits a split step
        (Phase.SPLIT_PENDING, Phase.RUNNING, False),  # a split step is never claimed whole again
    ],
)
def test_step_transitions(old: Phase, new: Phase, allowed: bool) -> None:
    assert can_move(old, new) is allowed


def test_a_record_is_parsed_once_into_its_phase() -> None:
    assert step("pending").phase == Phase.PENDING
    assert step("running", worker_id="w").phase == Phase.RUNNING
    assert step("running", **SPLIT).phase == Phase.SPLIT
    assert step("running", **ALL_DONE).phase == Phase.WAITING_TO_MERGE
    assert step("running", **ALL_DONE, worker_id="w", lease_expires_at=10).phase == Phase.MERGING
    assert step("pending", **SPLIT).phase == Phase.SPLIT_PENDING
    assert step("done").phase == Phase.SUCCEEDED and step("failed").phase == Phase.FAILED
    assert StepRecord.parse(None, "s") is None and StepRecord.parse({"steps": {}}, "s") is None
    assert SegmentRecord.parse(0, None).phase == SegmentPhase.UNSENT
    assert SegmentRecord.parse(0, {"state": "pending", "message_id": "m"}).phase == SegmentPhase.QUEUED
    assert SegmentRecord.parse(0, {"state": "running"}).phase == SegmentPhase.RUNNING


def test_why_a_claim_was_refused() -> None:
    running = step("running", message_id="m1", worker_id="w")
    assert classify_unclaimable(None, "m1", has_job=False) == Unclaimable.NO_JOB
    assert classify_unclaimable(None, "m1") == Unclaimable.NO_STEP
    assert classify_unclaimable(running, "m1") == Unclaimable.HELD_BY_THIS_MESSAGE
    assert classify_unclaimable(running, "m2") == Unclaimable.HELD_BY_OTHER_MESSAGE
    assert classify_unclaimable(step("done", status="succeeded"), "m1") == Unclaimable.FINISHED
    assert classify_unclaimable(step(**SPLIT), "m-step") == Unclaimable.SPLIT
    assert classify_unclaimable(step(**SPLIT), "m", SegmentRecord.parse(5, None)) == Unclaimable.NO_STEP
    assert classify_unclaimable(step("pending", **SPLIT), "m", SegmentRecord.parse(0, None)) == Unclaimable.NOT_RUNNING
    assert classify_unclaimable(step(**SPLIT), "m", SegmentRecord.parse(0, {"state": "done"})) == Unclaimable.FINISHED
    assert classify_unclaimable(step(**SPLIT), "m", SegmentRecord.parse(0, {"state": "running", "message_id": "m"})) == (
        Unclaimable.HELD_BY_THIS_MESSAGE
    )
    assert classify_unclaimable(step(**SPLIT), "m", merging=True) == Unclaimable.SEGMENTS_LEFT


def test_what_the_worker_does_with_a_refused_claim() -> None:
    assert on_refused(Unclaimable.SPLIT, step(**SPLIT), False, False) == OnRefused.RESUME
    assert on_refused(Unclaimable.SPLIT, step("pending", **ALL_DONE), False, False) == OnRefused.RESUME_AND_MERGE
    # a done segment's message comes back and the merge never committed: it merges (an expired merge is taken over)
    assert on_refused(Unclaimable.FINISHED, step(**ALL_DONE), True, False) == OnRefused.MERGE
    # after a retry of a failed merge, the step's own message whose merge was killed takes it over (review: postponed forever)
    merging = step(**(ALL_DONE | {"message_id": "m-retry"}), worker_id="w", lease_expires_at=5)
    assert on_refused(Unclaimable.HELD_BY_THIS_MESSAGE, merging, False, False) == OnRefused.MERGE
    assert on_refused(Unclaimable.HELD_BY_THIS_MESSAGE, merging, False, True) == OnRefused.POSTPONE  # its lease still runs
    assert on_refused(Unclaimable.FINISHED, step("failed", status="failed"), False, False) == OnRefused.REPORT_FAILED
    assert on_refused(Unclaimable.FINISHED, step(**SPLIT), True, False) == OnRefused.DROP
    assert on_refused(Unclaimable.HELD_BY_OTHER_MESSAGE, step(worker_id="w", message_id="x"), False, False) == OnRefused.DROP


def test_which_segments_only_the_step_message_sends() -> None:
    record = step(**SPLIT)
    segments = segment_records(3, {0: {"state": "done"}, 1: {"state": "pending", "message_id": "m1"}})
    assert unclaimed(record, segments) == [2]
    assert needs_step_message(record, segments, "m-step")
    segments = segment_records(3, {0: {"state": "done"}, 1: {"state": "pending", "message_id": "m1"}, 2: {"state": "running"}})
    assert not needs_step_message(record, segments, "m-step")


def test_dead_letters_of_a_step_message() -> None:
    assert on_step_dead_letter(step("pending"), [], "m") == OnDeadLetter.FAIL_STEP  # the store's condition decides
    assert on_step_dead_letter(step("done", status="succeeded"), [], "m") == OnDeadLetter.DROP
    carried = segment_records(3, {i: {"state": "pending", "message_id": f"m{i}"} for i in range(3)})
    assert on_step_dead_letter(step(**SPLIT), carried, "m-step") == OnDeadLetter.DROP  # the segments carry it
    # some never sent (or their ids never recorded: the splitter killed between SQS's answer and its records): the
    # consumer sends them (issue 21: such a job was failed although its segments had messages)
    assert on_step_dead_letter(step(**SPLIT), segment_records(3, {}), "m-step") == OnDeadLetter.SEND_UNSENT
    # every segment done, about to merge through the message that completed the set: the splitter's is not needed
    # (review: a job about to merge was failed)
    assert on_step_dead_letter(step(**ALL_DONE), [], "m-step") == OnDeadLetter.DROP
    # after a retry, the resuming message carries the merge (review: never ended when it was dropped)
    assert on_step_dead_letter(step(**ALL_DONE, carrier="m-retry"), [], "m-retry") == OnDeadLetter.FAIL_MERGE
    assert on_step_dead_letter(step("pending", **ALL_DONE), [], "m-retry") == OnDeadLetter.FAIL_STEP


def test_dead_letters_of_a_segment_message() -> None:
    pending = SegmentRecord.parse(1, {"state": "running", "message_id": "m1"})
    done = SegmentRecord.parse(2, {"state": "done", "message_id": "m2"})
    assert on_segment_dead_letter(step(**SPLIT), pending, "m1") == OnDeadLetter.FAIL_SEGMENT
    assert on_segment_dead_letter(step(**SPLIT), done, "m2") == OnDeadLetter.DROP  # segments left: others carry the step
    assert on_segment_dead_letter(step(**ALL_DONE), done, "m2") == OnDeadLetter.FAIL_MERGE  # no merge: it carried it
    assert on_segment_dead_letter(step(**ALL_DONE, carrier="m0"), done, "m2") == OnDeadLetter.DROP  # m0 merges
    assert on_segment_dead_letter(step(**ALL_DONE, carrier="m2"), done, "m2") == OnDeadLetter.FAIL_MERGE
    assert on_segment_dead_letter(step("failed", status="failed", **SPLIT), pending, "m1") == OnDeadLetter.DROP


def test_gpupipe_retry_keeps_done_and_live_held_segments() -> None:
    assert on_retry(step("failed", status="failed")) == OnRetry.WHOLE
    assert on_retry(step("failed", status="failed", **SPLIT)) == OnRetry.SPLIT
    assert on_retry(step("running")) == OnRetry.NOT_FAILED and on_retry(None) == OnRetry.NOT_FAILED
    assert not segment_reset_on_retry(SegmentRecord.parse(0, {"state": "done"}), 100.0)
    assert not segment_reset_on_retry(SegmentRecord.parse(0, {"state": "running", "lease_expires_at": 130.0}), 100.0)
    assert segment_reset_on_retry(SegmentRecord.parse(0, {"state": "running", "lease_expires_at": 90.0}), 100.0)
    assert segment_reset_on_retry(SegmentRecord.parse(0, {"state": "failed"}), 100.0)
    assert segment_reset_on_retry(SegmentRecord.parse(0, None), 100.0)
    assert StepState.PENDING == "pending"


def test_the_doc_tool_reports_a_stale_doc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "doc.md"
    stale.write_text(f"x\n{lifecycle_doc.BEGIN}\nold\n{lifecycle_doc.END}\n")
    monkeypatch.setattr(lifecycle_doc, "DOC", stale)
    assert lifecycle_doc.main(["--check"]) == 1
    assert lifecycle_doc.main([]) == 0 and lifecycle_doc.main(["--check"]) == 0


def test_a_dead_lettered_merge_with_budget_left_is_carried_on_by_a_fresh_message() -> None:
    """Issue 21: the message that completed the set spent its receives on segment attempts taken over (each counted in
    the job item's budget); the merge failed "moved to the dead-letter queue" with 0 of 5 failures spent."""
    done = SegmentRecord.parse(1, {"state": "done", "message_id": "m1"})
    merging = {**ALL_DONE, "carrier": "m1", "worker_id": "w", "lease_expires_at": 5, "max_attempts": 5}
    assert on_segment_dead_letter(step(**merging, failures=0), done, "m1") == OnDeadLetter.REDRIVE_MERGE
    assert on_segment_dead_letter(step(**merging, failures=4), done, "m1") == OnDeadLetter.FAIL_MERGE  # spent: it ends
    assert on_segment_dead_letter(step(**ALL_DONE), done, "m1") == OnDeadLetter.FAIL_MERGE  # never claimed: budget unknown
    assert on_step_dead_letter(step(**merging | {"carrier": "m-retry"}), [], "m-retry") == OnDeadLetter.REDRIVE_MERGE
