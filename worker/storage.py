"""S3 I/O for one attempt: read exactly the object version the job was made for; write attempt-scoped outputs.

Reads pin the version: ``VersionId`` in a versioned bucket, ``IfMatch`` on the ETag otherwise, so a
newer upload of the same key (which has a job of its own) is never processed under this job.

Writes go under ``result_prefix(..., job_id, step, attempt)``, a location no other attempt uses, and
each write first checks that the claim is still held. The job item's ``result_file`` is set by the
conditional ``mark_done`` only, so it always names the outputs of the attempt it records as done.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from pipeline_core.jobs import ObjectRef, key_too_long, result_key, result_prefix
from pipeline_core.jobstore import Claim, ClaimLost
from worker.errors import PermanentError

RESULT_SCHEMA_VERSION = "2"  # 2: outputs are attempt-scoped and the input records how its version was pinned
RESULT_FILE = "result.json"
_MISSING = ("404", "NoSuchKey", "NotFound", "NoSuchVersion")
_CHANGED = ("412", "PreconditionFailed")
_CONTENT_TYPES = {".json": "application/json", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}
PICTURE_NAME_ALLOWANCE = 40  # bytes kept free after the prefix for the names of the files a processor writes


def pin(obj: ObjectRef) -> dict[str, str]:
    return {"VersionId": obj.version} if obj.versioned else {"IfMatch": f'"{obj.version}"'}


def describe_read_error(error: ClientError, obj: ObjectRef) -> PermanentError | None:
    code = str(error.response.get("Error", {}).get("Code", ""))
    where = f"s3://{obj.bucket}/{obj.key}"
    if code in _MISSING:
        what = f"version {obj.version}" if obj.versioned else "the object"
        return PermanentError(f"input {where} no longer exists ({what} was deleted)")
    if code in _CHANGED:
        return PermanentError(
            f"input {where} was overwritten after this job was made (ETag {obj.version}); the new upload has a job of its own"
        )
    return None


def fetch_input(s3: Any, obj: ObjectRef, path: Path, max_bytes: int) -> dict[str, Any]:
    """Download the job's object version to ``path``; return its head. PermanentError when it is gone or too big.

    One GET: its response carries the head (size, ETag, version), so the size is checked before the body is read.
    """
    try:
        response = s3.get_object(Bucket=obj.bucket, Key=obj.key, **pin(obj))
        body = response.pop("Body")
        with contextlib.closing(body):
            if response["ContentLength"] > max_bytes:
                raise PermanentError(f"input is {response['ContentLength']} bytes, over the limit of {max_bytes}")
            with path.open("wb") as handle:
                shutil.copyfileobj(body, handle, length=1 << 20)
    except ClientError as error:
        permanent = describe_read_error(error, obj)
        if permanent is not None:
            raise permanent from None
        raise
    return response


class AttemptOutputs:
    """Where one attempt writes, and the writes themselves, fenced by the claim's ``lost`` flag."""

    def __init__(self, s3: Any, bucket: str, results_prefix: str, obj: ObjectRef, claim: Claim, lost: threading.Event):
        self.s3, self.bucket = s3, bucket
        self.claim, self.lost = claim, lost
        self.prefix = result_prefix(results_prefix, obj.key, claim.job_id, claim.step, claim.attempt, claim.segment)
        self.result_key = result_key(results_prefix, obj.key, claim.job_id, claim.step, claim.attempt, claim.segment)

    def check_key_length(self) -> None:
        """Refuse, before any work, an input whose outputs S3 could not store."""
        too_long = key_too_long(self.prefix + "x" * PICTURE_NAME_ALLOWANCE)
        if too_long:
            raise PermanentError(f"input key is too long: its result keys would be {too_long}")

    def put(self, name: str, body: bytes) -> str:
        if self.lost.is_set():
            raise ClaimLost(f"{self.claim.job_id}/{self.claim.step} attempt {self.claim.attempt} lost its claim; not writing {name}")
        key = self.prefix + name
        too_long = key_too_long(key)
        if too_long:
            raise PermanentError(f"output {name!r} cannot be stored: its key would be {too_long}")
        content_type = _CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        return key

    def put_files(self, files: Mapping[str, Path]) -> None:
        for name, path in sorted(files.items()):
            self.put(name, path.read_bytes())

    def put_result(self, document: Mapping[str, Any]) -> str:
        """Upload the result document (after the files it lists); return its S3 URI for ``mark_done``."""
        key = self.put(RESULT_FILE, json.dumps(document, ensure_ascii=False, indent=1).encode())
        return f"s3://{self.bucket}/{key}"
