"""Job and step states, ids, queue messages and result locations (the transitions: ``pipeline_core.protocol``; the
items: ``pipeline_core.records``).

Everything here is pure: no AWS calls. ``jobstore`` does the DynamoDB I/O.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

MESSAGE_KIND = "gpu-pipeline.step"
MESSAGE_VERSION = 1
DEFAULT_TTL_DAYS = 30
MAX_S3_KEY_BYTES = 1024  # S3 refuses longer keys
ORIGIN_ATTRIBUTE = "gpupipe-origin"  # message attribute: a requeued copy carries the id of the message it continues
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


class StepState(StrEnum):
    WAITING = "waiting"  # on the steps it runs after: not queued yet
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


TERMINAL_JOB_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED})


@dataclass(frozen=True)
class ObjectRef:
    """One uploaded object version: the unit a job is made for."""

    bucket: str
    key: str
    version: str  # the S3 version id when ``versioned``, else the object's ETag
    size: int = 0
    versioned: bool = False  # True: ``version`` is a VersionId; reads pin it. False: reads require the ETag to match

    @property
    def job_id(self) -> str:
        return job_id_for(self.bucket, self.key, self.version)


def job_id_for(bucket: str, key: str, version: str) -> str:
    """A stable id, so a duplicate event for the same object version maps to the same job."""
    digest = hashlib.sha256(f"{bucket}\n{key}\n{version}".encode()).hexdigest()
    return digest[:32]


def result_prefix(results_prefix: str, key: str, job_id: str, step: str, attempt: int, segment: int | None = None) -> str:
    """Where one attempt of one step writes its outputs: unique to the object version (the job) and the attempt.

    No two attempts share a location, so a worker that lost its claim can never overwrite the outputs the
    job item records as done: the conditional ``mark_done`` that names this prefix is the commit.
    A segment of a split step writes under ``{step}/segment-{index}/attempt-{n}/``.
    """
    part = step if segment is None else f"{step}/segment-{segment:04d}"
    return f"{results_prefix}{key}/{job_id}/{part}/attempt-{attempt}/"


def result_key(results_prefix: str, key: str, job_id: str, step: str, attempt: int, segment: int | None = None) -> str:
    return result_prefix(results_prefix, key, job_id, step, attempt, segment) + "result.json"


def origin_id(message_id: str, attributes: Mapping[str, Any] | None) -> str:
    """The id of the chain of copies a message belongs to (a claim records it): its origin attribute, else its own id.

    ``attributes`` are message attributes as ReceiveMessage gives them (``StringValue``) or as Lambda's
    SQS events do (``stringValue``).
    """
    attribute = (attributes or {}).get(ORIGIN_ATTRIBUTE) or {}
    return attribute.get("StringValue") or attribute.get("stringValue") or message_id


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` (a step's ``result_file``) -> (bucket, key)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not key:
        raise ValueError(f"not an s3:// object URI: {uri!r}")
    return bucket, key


def key_too_long(key: str) -> str | None:
    """Why S3 would refuse ``key``, or None."""
    size = len(key.encode())
    return f"{size} bytes, over S3's {MAX_S3_KEY_BYTES}-byte key limit" if size > MAX_S3_KEY_BYTES else None


@dataclass(frozen=True)
class WorkMessage:
    """The body of a message on a step's queue: do ``step`` for ``job_id`` (only ``segment`` of it, when set)."""

    job_id: str
    step: str
    bucket: str
    key: str
    version: str
    versioned: bool = False
    segment: int | None = None  # a split step's segment (its range is on the job item); absent from the body when None

    @classmethod
    def for_job(cls, obj: ObjectRef, step: str) -> WorkMessage:
        return cls(job_id=obj.job_id, step=step, bucket=obj.bucket, key=obj.key, version=obj.version, versioned=obj.versioned)

    @property
    def object_ref(self) -> ObjectRef:
        return ObjectRef(bucket=self.bucket, key=self.key, version=self.version, versioned=self.versioned)

    def for_segment(self, segment: int) -> WorkMessage:
        return replace(self, segment=segment)

    def to_body(self) -> str:
        body = asdict(self)
        if self.segment is None:
            del body["segment"]  # the body of an unsplit step's message is what it always was
        return json.dumps({"kind": MESSAGE_KIND, "v": MESSAGE_VERSION, **body}, ensure_ascii=False)

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> WorkMessage:
        if body.get("kind") != MESSAGE_KIND:
            raise ValueError(f"not a {MESSAGE_KIND} message")
        missing = [name for name in ("job_id", "step", "bucket", "key", "version") if not body.get(name) or not isinstance(body[name], str)]
        if missing:
            raise ValueError(f"step message lacks {', '.join(missing)}")
        segment = body.get("segment")
        if segment is not None and (type(segment) is not int or segment < 0):
            raise ValueError(f"step message's segment must be a non-negative integer, got {segment!r}")
        message = cls(body["job_id"], body["step"], body["bucket"], body["key"], body["version"], body.get("versioned") is True, segment)
        if not _JOB_ID.match(message.job_id) or message.job_id != message.object_ref.job_id:
            raise ValueError(f"step message's job_id {message.job_id[:40]!r} is not the id of the object it names")
        return message
