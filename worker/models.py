"""Model files named by ``s3://`` URIs in a step's processor options, copied to local folders at start-up.

A step may name a SavedModel as ``"model": "${MODELS_URI}<name>"`` (the Terraform module sets ``MODELS_URI`` to
``s3://<bucket>/models/``, where ``make model`` uploads). The worker copies each such folder once, before it builds
its processor, and hands the processor the local path: processors read local files and never call AWS.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3


def fetch_s3_prefix(uri: str, destination: Path, s3: Any = None) -> Path:
    """Download every object under an ``s3://bucket/prefix`` into ``destination``; return the local folder."""
    s3 = s3 or boto3.client("s3")
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    found = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            relative = obj["Key"][len(prefix) :]
            if not relative or relative.endswith("/") or ".." in Path(relative).parts:
                continue
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(target))
            found += 1
    if not found:
        raise FileNotFoundError(f"nothing under {uri}")
    return destination


def local_models(options: Any, s3: Any = None) -> Any:
    """``options`` with every ``"model"`` that names an ``s3://`` prefix (after ``${VAR}`` expansion) replaced by the
    local folder it was copied to (named as the prefix's last part, so a model's version reads the same)."""
    if isinstance(options, list):
        return [local_models(item, s3) for item in options]
    if not isinstance(options, Mapping):
        return options
    resolved = {key: local_models(value, s3) for key, value in options.items()}
    model = resolved.get("model")
    if isinstance(model, str) and os.path.expandvars(model).startswith("s3://"):
        uri = os.path.expandvars(model)
        folder = Path(tempfile.mkdtemp(prefix="model-")) / Path(uri.rstrip("/")).name
        resolved["model"] = str(fetch_s3_prefix(uri, folder, s3))
    return resolved
