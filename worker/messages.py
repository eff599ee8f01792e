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
    return ParsedMessage(items=(WorkItem(message.object_ref, message.job_id, step, False),))


class Outcome(StrEnum):
    DONE = "done"  # step done, result written
    FAILED = "failed"  # permanent error, step marked failed
    SKIPPED = "skipped"  # already finished, or a duplicate of work another worker holds
    RETRY = "retry"  # transient error: redeliver after the retry delay
    POSTPONE = "postpone"  # SQS redelivered the message its holder still works on: look again after the lease
    GAVE_UP = "gave-up"  # transient error on the last allowed receive: step failed, message to the DLQ
    LOST = "lost"  # our claim expired and another worker took over: leave its message alone


@dataclass(frozen=True)
class ItemResult:
    outcome: Outcome
    delay: int = 0  # seconds before the message should be seen again, for RETRY and POSTPONE


@dataclass(frozen=True)
class MessageAction:
    delete: bool
    visibility: int | None = None  # when kept: the new visibility timeout, None to leave it as it is


def settle(results: Sequence[ItemResult]) -> MessageAction:
    """Delete a message only when every item in it is settled; otherwise say when to see it again."""
    outcomes = {result.outcome for result in results}
    if not outcomes & {Outcome.RETRY, Outcome.POSTPONE, Outcome.GAVE_UP, Outcome.LOST}:
        return MessageAction(delete=True)
    if outcomes & {Outcome.RETRY, Outcome.POSTPONE, Outcome.GAVE_UP}:
        return MessageAction(delete=False, visibility=max(r.delay for r in results if r.outcome != Outcome.LOST))
    return MessageAction(delete=False)
