"""Queue message bodies -> work items: one reading for the worker and the dead-letter consumer.

A body is a router step message (``pipeline_core.jobs.WorkMessage``, maybe naming one segment of a split
step) or a raw S3 notification sent straight to a step's queue (the worker creates its job as it claims it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

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
        raise InvalidMessage(f"message for step {message.step!r} reached a queue of step {step!r}")
    return ParsedMessage(items=(WorkItem(message.object_ref, message.job_id, step, False, message.segment),))
