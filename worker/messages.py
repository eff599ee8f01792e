"""Queue message bodies -> work items, and what to do with a message once its items are settled."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from pipeline_core.jobs import ObjectRef, WorkMessage
from pipeline_core.s3events import created_objects, is_s3_event, is_test_event


class InvalidMessage(ValueError):
    """A body that is neither a step message nor an S3 notification: it goes to the DLQ."""


@dataclass(frozen=True)
class WorkItem:
    """One step of one job to run. ``from_s3_event`` items create their job first."""

    obj: ObjectRef
    job_id: str
    step: str
    from_s3_event: bool
    segment: int | None = None  # only this segment of a split step


@dataclass(frozen=True)
class ParsedMessage:
    items: tuple[WorkItem, ...]
    is_test_event: bool = False


def parse_body(body: str, step: str) -> ParsedMessage:
    """Work items in a message body: a router step message, or a raw S3 notification."""
    try:
        data = json.loads(body)
    except json.JSONDecodeError as error:
        raise InvalidMessage(f"body is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise InvalidMessage(f"body is a JSON {type(data).__name__}, not an object")
    if is_test_event(data):
        return ParsedMessage(items=(), is_test_event=True)
    if is_s3_event(data):
        try:
            objects = created_objects(data)
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidMessage(f"malformed S3 notification: {error!r}") from None
        return ParsedMessage(items=tuple(WorkItem(obj, obj.job_id, step, True) for obj in objects))
    try:
        message = WorkMessage.from_dict(data)
    except ValueError as error:
        raise InvalidMessage(str(error)) from None
    if message.step != step:
        raise InvalidMessage(f"message for step {message.step!r} reached the queue of step {step!r}")
    return ParsedMessage(items=(WorkItem(message.object_ref, message.job_id, step, False, message.segment),))


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
