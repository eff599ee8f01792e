"""S3 event notifications -> object references.

Handles the ``s3:TestEvent`` that S3 sends when a notification is configured,
URL-encoded keys (``+`` for space, ``%xx`` for everything else) and events
with several records.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

from pipeline_core.jobs import ObjectRef


def is_test_event(event: Mapping[str, Any]) -> bool:
    return event.get("Event") == "s3:TestEvent"


def is_s3_event(event: Mapping[str, Any]) -> bool:
    """Whether ``event`` is an S3 notification (records from S3, or the test event)."""
    if is_test_event(event):
        return True
    records = event.get("Records")
    return isinstance(records, list) and any(isinstance(r, Mapping) and r.get("eventSource") == "aws:s3" for r in records)


def created_objects(event: Mapping[str, Any]) -> list[ObjectRef]:
    """The objects an S3 notification reports as created; [] for the test event."""
    if is_test_event(event):
        return []
    objects = []
    for record in event.get("Records", []):
        if record.get("eventSource") != "aws:s3" or not str(record.get("eventName", "")).startswith("ObjectCreated:"):
            continue
        s3 = record["s3"]
        obj = s3["object"]
        version = obj.get("versionId") or obj.get("eTag")
        if not version:
            raise ValueError(f"S3 record for {obj.get('key')!r} has neither versionId nor eTag")
        objects.append(
            ObjectRef(
                bucket=s3["bucket"]["name"],
                key=unquote_plus(obj["key"]),
                version=str(version).strip('"'),
                size=int(obj.get("size", 0)),
                versioned=bool(obj.get("versionId")),
            )
        )
    return objects
