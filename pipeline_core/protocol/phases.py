"""Every state a step of a job, or one segment of a split step, can be in; and the events that move them."""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    """Every state a step of a job can be in."""

    WAITING = "waiting-on-parents"  # a step of a graph whose parents have not all succeeded: not queued
    PENDING = "pending"  # queued, waiting for a claim (new, released after an error or a hand-back, or put back by gpupipe retry)
    RUNNING = "running"  # claimed whole: a holder with a lease (a lease run out is taken over by the next claim)
    SPLIT = "split"  # split into segments, some not done; no holder: the segments' messages carry it
    WAITING_TO_MERGE = "waiting-to-merge"  # every segment done, no merge holder: a message that saw the set complete merges
    MERGING = "merging"  # every segment done, a merge holder with a lease
    SPLIT_PENDING = "split-pending"  # split, put back by gpupipe retry: waits for the step's message to resume it
    SUCCEEDED = "succeeded"  # done: result_file is the committed output of the attempt that holds it
    FAILED = "failed"  # with a reason; gpupipe retry puts it back


class SegmentPhase(StrEnum):
    """Every state one segment of a split step can be in."""

    UNSENT = "unsent"  # no item, or pending with no message recorded: only the step's message sends it
    QUEUED = "queued"  # pending, its message recorded (sent, or requeued after an error or a hand-back)
    RUNNING = "running"  # claimed, a holder with a lease
    DONE = "done"  # counted on its step, its result_file committed
    FAILED = "failed"  # failed its step with it


class Event(StrEnum):
    CLAIM = "claim"
    TAKE_OVER = "take over an expired lease"
    SPLIT = "split"
    FINISH = "finish"
    FAIL = "fail"
    RELEASE = "release"
    SEGMENT_DONE = "segment done"
    LAST_SEGMENT_DONE = "last segment done"
    SEGMENT_FAILED = "segment failed"
    CLAIM_MERGE = "claim merge"
    DEAD_LETTER = "dead letter"
    RETRY = "gpupipe retry"
    RESUME = "resume"
    SEND = "message sent"
    QUEUE = "every parent succeeded"
    RETRY_FROM = "gpupipe retry --from"
    RETRY_DOWNSTREAM = "gpupipe retry --from upstream"
