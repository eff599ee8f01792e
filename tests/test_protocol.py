"""The job protocol in one place (pipeline_core.protocol): the table is whole and consistent, the doc is generated
from it, and the decisions the worker, the dead-letter consumer and gpupipe carry out are pure functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pipeline_core.jobs import JobStatus, StepState
from pipeline_core.jobstore import JobStore
from pipeline_core.jobstore.claims import Claims
from pipeline_core.jobstore.deadletters import DeadLetters
from pipeline_core.jobstore.joins import Joins
from pipeline_core.jobstore.retry import Retries
from pipeline_core.jobstore.segments import Splits
from pipeline_core.protocol.decisions import (
    OnDeadLetter,
    OnRefused,
    OnRetry,
    Refusal,
    classify_refusal,
    needs_step_message,
    on_refused,
    on_retry,
    on_segment_dead_letter,
    on_step_dead_letter,
    segment_reset_on_retry,
    unclaimed,
)
from pipeline_core.protocol.guards import GUARDS
from pipeline_core.protocol.phases import Event, Phase, SegmentPhase
from pipeline_core.protocol.table import JOB_TRANSITIONS, SEGMENT_TRANSITIONS, TRANSITIONS, can_move, next_phase
from pipeline_core.records import SegmentRecord, StepRecord, parse_job, segment_records
from tools import lifecycle_doc

pytestmark = pytest.mark.unit


def step(state: str = "running", status: str = "running", **fields: object) -> StepRecord:
    return StepRecord.parse("s", {"state": state, **fields}, JobStatus(status))


def segs(items: dict[int, dict[str, object]], count: int = 3) -> list[SegmentRecord]:
    return segment_records(count, {index: SegmentRecord.parse(index, item) for index, item in items.items()})


SPLIT = {"segment_count": 3, "segments_done": 1, "message_id": "m-step"}
ALL_DONE = {"segment_count": 3, "segments_done": 3, "message_id": "m-step"}


def test_the_docs_picture_and_tables_are_the_ones_the_table_generates() -> None:
    text = lifecycle_doc.DOC.read_text()
    assert lifecycle_doc.updated(text) == text, "run python tools/lifecycle_doc.py"
    assert "```mermaid" in text and "split --> waiting_to_merge" in text


ROOMS = {"claims": Claims, "splits": Splits, "dead_letters": DeadLetters, "retries": Retries, "joins": Joins}


def method(code: str) -> object:
    """The ``JobStore`` method a row names: ``create_job`` on the store, ``claims.claim`` on one of its rooms."""
    room, _, name = code.rpartition(".")
    return getattr(ROOMS[room] if room else JobStore, name, None)


def test_every_transition_cites_known_guards_and_a_jobstore_method_and_every_guard_is_cited() -> None:
    rows = (*TRANSITIONS, *SEGMENT_TRANSITIONS, *JOB_TRANSITIONS)
    cited = {g for t in rows for g in t.guards}
    assert cited == set(GUARDS), (cited - set(GUARDS), set(GUARDS) - cited)
    for t in rows:
        assert callable(method(t.code)), t


CONDITION_MAKERS = {"eq", "ne", "lt", "ge", "exists", "missing", "is_in", "Compare", "Exists", "In", "Guard"}


def test_the_job_store_builds_conditions_only_from_named_guards() -> None:
    """No condition spelled in the store: a comparison, an existence test or a named Guard is made only in
    ``protocol.guards``; the store composes guards with ``&``, ``|`` and ``~``."""
    store = Path(Claims.__module__.replace(".", "/")).parent
    made = [
        f"{path.name}:{node.lineno} {name}"
        for path in sorted(store.glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and (name := node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")) in CONDITION_MAKERS
    ]
    assert made == [], made


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
    assert parse_job(None) is None and parse_job({"job_id": "x#s#00001", "state": "done"}) is None
    assert SegmentRecord.parse(0, None).phase == SegmentPhase.UNSENT
    assert SegmentRecord.parse(0, {"state": "pending", "message_id": "m"}).phase == SegmentPhase.QUEUED
    assert SegmentRecord.parse(0, {"state": "running"}).phase == SegmentPhase.RUNNING


def test_why_a_claim_was_refused() -> None:
    running = step("running", message_id="m1", worker_id="w")
    assert classify_refusal(None, "m1", has_job=False) == Refusal.NO_JOB
    assert classify_refusal(None, "m1") == Refusal.NO_STEP
    assert classify_refusal(running, "m1") == Refusal.HELD_BY_THIS_MESSAGE
    assert classify_refusal(running, "m2") == Refusal.HELD_BY_OTHER_MESSAGE
    assert classify_refusal(step("done", status="succeeded"), "m1") == Refusal.FINISHED
    assert classify_refusal(step(**SPLIT), "m-step") == Refusal.SPLIT
    assert classify_refusal(step(**SPLIT), "m", SegmentRecord.parse(5, None)) == Refusal.NO_STEP
    assert classify_refusal(step("pending", **SPLIT), "m", SegmentRecord.parse(0, None)) == Refusal.NOT_RUNNING
    assert classify_refusal(step(**SPLIT), "m", SegmentRecord.parse(0, {"state": "done"})) == Refusal.FINISHED
    assert classify_refusal(step(**SPLIT), "m", SegmentRecord.parse(0, {"state": "running", "message_id": "m"})) == (
        Refusal.HELD_BY_THIS_MESSAGE
    )
    assert classify_refusal(step(**SPLIT), "m", merging=True) == Refusal.SEGMENTS_LEFT


def test_what_the_worker_does_with_a_refused_claim() -> None:
    assert on_refused(Refusal.SPLIT, step(**SPLIT), False, False) == OnRefused.RESUME
    assert on_refused(Refusal.SPLIT, step("pending", **ALL_DONE), False, False) == OnRefused.RESUME_AND_MERGE
    # a done segment's message comes back and the merge never committed: it merges (an expired merge is taken over)
    assert on_refused(Refusal.FINISHED, step(**ALL_DONE), True, False) == OnRefused.MERGE
    # after a retry of a failed merge, the step's own message whose merge was killed takes it over (rather than postponed forever)
    merging = step(**(ALL_DONE | {"message_id": "m-retry"}), worker_id="w", lease_expires_at=5)
    assert on_refused(Refusal.HELD_BY_THIS_MESSAGE, merging, False, False) == OnRefused.MERGE
    assert on_refused(Refusal.HELD_BY_THIS_MESSAGE, merging, False, True) == OnRefused.POSTPONE  # its lease still runs
    assert on_refused(Refusal.FINISHED, step("failed", status="failed"), False, False) == OnRefused.REPORT_FAILED
    assert on_refused(Refusal.FINISHED, step(**SPLIT), True, False) == OnRefused.DROP
    assert on_refused(Refusal.HELD_BY_OTHER_MESSAGE, step(worker_id="w", message_id="x"), False, False) == OnRefused.DROP


def test_which_segments_only_the_step_message_sends() -> None:
    record = step(**SPLIT)
    segments = segs({0: {"state": "done"}, 1: {"state": "pending", "message_id": "m1"}})
    assert unclaimed(record, segments) == [2]
    assert needs_step_message(record, segments, "m-step")
    segments = segs({0: {"state": "done"}, 1: {"state": "pending", "message_id": "m1"}, 2: {"state": "running"}})
    assert not needs_step_message(record, segments, "m-step")


def test_dead_letters_of_a_step_message() -> None:
    assert on_step_dead_letter(step("pending"), [], "m") == OnDeadLetter.FAIL_STEP  # the store's condition decides
    assert on_step_dead_letter(step("done", status="succeeded"), [], "m") == OnDeadLetter.DROP
    carried = segment_records(3, {i: SegmentRecord.parse(i, {"state": "pending", "message_id": f"m{i}"}) for i in range(3)})
    assert on_step_dead_letter(step(**SPLIT), carried, "m-step") == OnDeadLetter.DROP  # the segments carry it
    # some never sent (or their ids never recorded: the splitter killed between SQS's answer and its records): the
    # consumer sends them, rather than failing a job whose segments have messages
    assert on_step_dead_letter(step(**SPLIT), segment_records(3, {}), "m-step") == OnDeadLetter.SEND_UNSENT
    # every segment done, about to merge through the message that completed the set: the splitter's is not needed
    assert on_step_dead_letter(step(**ALL_DONE), [], "m-step") == OnDeadLetter.DROP
    # after a retry, the resuming message carries the merge: dropping it would leave the job unended
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
    """The message that completed the set spent its receives on segment attempts taken over (each counted in
    the job item's budget); the merge failed "moved to the dead-letter queue" with 0 of 5 failures spent."""
    done = SegmentRecord.parse(1, {"state": "done", "message_id": "m1"})
    merging = {**ALL_DONE, "carrier": "m1", "worker_id": "w", "lease_expires_at": 5, "max_attempts": 5}
    assert on_segment_dead_letter(step(**merging, failures=0), done, "m1") == OnDeadLetter.REDRIVE_MERGE
    assert on_segment_dead_letter(step(**merging, failures=4), done, "m1") == OnDeadLetter.FAIL_MERGE  # spent: it ends
    assert on_segment_dead_letter(step(**ALL_DONE), done, "m1") == OnDeadLetter.FAIL_MERGE  # never claimed: budget unknown
    assert on_step_dead_letter(step(**merging | {"carrier": "m-retry"}), [], "m-retry") == OnDeadLetter.REDRIVE_MERGE
