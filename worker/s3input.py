"""The job's input in S3, read in ranges (``worker.ranged``): every ranged GET pinned to the job's version
(``VersionId``, or ``IfMatch`` on the ETag), its first GET also the head (size, ETag, version) that a whole-file read
would return. The GETs are ordinary boto3 calls, so they use TLS (and retries, and credentials) as every other call
does.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from pipeline_core.jobs import ObjectRef
from worker.errors import PermanentError
from worker.ranged import FIRST_BLOCK, RangedInput
from worker.storage import describe_read_error, pin

WHOLE_BELOW = 8 * 1024 * 1024  # a step's first read takes a file this small whole: an image costs one GET, as before
WHOLE = 0  # first_read: the whole object, one GET without a range
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp"})


def first_read(key: str, size_hint: int, segment: bool) -> int:
    """How many bytes the first GET asks for (``WHOLE``: all of them). A segment's: the header. A step's (it plans the
    split, or runs in one piece): the whole file when it is small (its notification's size) or, the size unknown
    (a later step's message has none), named as an image; else the header."""
    if segment:
        return FIRST_BLOCK
    if size_hint:
        return WHOLE if size_hint <= WHOLE_BELOW else FIRST_BLOCK
    return WHOLE if Path(key).suffix.lower() in IMAGE_SUFFIXES else FIRST_BLOCK


@contextlib.contextmanager
def _read_errors(obj: ObjectRef) -> Any:
    try:
        yield
    except ClientError as error:
        permanent = describe_read_error(error, obj)
        if permanent is not None:
            raise permanent from None
        raise


def total_size(response: dict[str, Any]) -> int:
    """The object's size from a ranged GET's ``ContentRange`` ("bytes 0-99/1234"), or its ``ContentLength`` without one."""
    content_range = str(response.get("ContentRange") or "")
    if "/" in content_range and not content_range.endswith("/*"):
        return int(content_range.rsplit("/", 1)[1])
    return int(response["ContentLength"])


def _ranged_get(s3: Any, obj: ObjectRef, start: int, end: int) -> bytes:
    """The bytes [start, end) of the job's version of ``obj``."""
    with _read_errors(obj):
        response = s3.get_object(Bucket=obj.bucket, Key=obj.key, Range=f"bytes={start}-{end - 1}", **pin(obj))
        with contextlib.closing(response["Body"]) as body:
            data: bytes = body.read()
            return data


class S3Input(RangedInput):
    """The job's object version in S3, read in ranged GETs pinned to it. ``head``: what a whole-object GET returns but the body."""

    def __init__(self, s3: Any, obj: ObjectRef, max_bytes: int, first_block: int = FIRST_BLOCK, spill: Path | None = None, **options: int):
        """The first GET (``first_block`` bytes, or ``WHOLE``) gives the head; the size is checked before its body is read.
        ``spill``: where the windows dropped from memory are kept (``RangedInput``)."""
        self.s3, self.obj = s3, obj
        with _read_errors(obj):
            try:
                ranged = {"Range": f"bytes=0-{first_block - 1}"} if first_block != WHOLE else {}
                response = s3.get_object(Bucket=obj.bucket, Key=obj.key, **ranged, **pin(obj))
            except ClientError as error:
                if str(error.response.get("Error", {}).get("Code", "")) != "InvalidRange":
                    raise
                response = s3.get_object(Bucket=obj.bucket, Key=obj.key, **pin(obj))  # an empty object has no byte 0
        body = response.pop("Body")
        size = total_size(response)
        if size > max_bytes:
            body.close()
            raise PermanentError(f"input is {size} bytes, over the limit of {max_bytes}")
        with contextlib.closing(body):
            first = body.read()
        self.response = {**response, "ContentLength": size}
        self.response.pop("ContentRange", None)
        # A function of the client and the object, not a bound method: the input must not refer to itself (a cycle
        # keeps its cached windows until a full garbage collection, long after its step).
        super().__init__(functools.partial(_ranged_get, s3, obj), size, obj.key, spill=spill, **options)
        self.calls, self.bytes_read = 1, len(first)
        self.add(0, first)

    def _rest(self, start: int) -> Any:
        with _read_errors(self.obj):
            return self.s3.get_object(Bucket=self.obj.bucket, Key=self.obj.key, Range=f"bytes={start}-", **pin(self.obj))["Body"]

    def download(self, path: Path) -> None:
        """The whole version to ``path``: what was read already, then the rest in one GET."""
        with _read_errors(self.obj):
            self.copy_to(path, self._rest)
