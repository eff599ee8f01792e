"""What to do with a message once its items are settled (its body is read by ``pipeline_core.bodies``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    DONE = "done"  # step done, result committed
    FAILED = "failed"  # permanent error, or the retry budget spent: step marked failed
    SKIPPED = "skipped"  # already finished, or a duplicate of work another message holds
    RETRY = "retry"  # transient error, step back to pending: see the message again after the retry delay
    POSTPONE = "postpone"  # the message came back while its step is still held: look again after the lease
    LOST = "lost"  # our claim expired and another worker took over: leave its message alone


@dataclass(frozen=True)
class ItemResult:
    outcome: Outcome
    delay: int = 0  # seconds before the message should be seen again, for RETRY and POSTPONE


@dataclass(frozen=True)
class MessageAction:
    delete: bool = False
    requeue_delay: int | None = None  # when set: send the body again after this delay, then delete this copy


def settle(results: Sequence[ItemResult]) -> MessageAction:
    """Delete a message when every item in it is settled; requeue it when one must run again; else leave it.

    Requeueing (a fresh copy, then delete) rather than changing the visibility means retries and
    postponements never use up the receives that SQS counts towards the dead-letter queue: those
    are left to attempts that end without settling (crashes), which the DLQ consumer then fails.
    """
    outcomes = {result.outcome for result in results}
    if outcomes & {Outcome.RETRY, Outcome.POSTPONE}:
        return MessageAction(requeue_delay=max(r.delay for r in results if r.outcome in (Outcome.RETRY, Outcome.POSTPONE)))
    if Outcome.LOST in outcomes:
        return MessageAction()
    return MessageAction(delete=True)
