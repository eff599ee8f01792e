"""Only ``pipeline_core/records.py`` knows the items' attribute names: no other module of the code that ships indexes
an item by a string key, and no other module turns what DynamoDB returns into Python values.

The item attribute names are read from the records module itself (its attribute paths, and the items it builds).
A name that is also a field of another document the code reads (a result document, a step message, an S3 event, the
pipeline definition) cannot be told apart in a subscript, so it is left out of the check; every raw-item access in
the code before records existed (``job["step_names"]``, ``job["steps"][name]["state"]``, ``step.get("result_file")``,
``item["segment_count"]``, ...) used one of the names that remain. AWS responses' member names (botocore's models of
the services the code calls) are left out the same way.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.loaders
import pytest

from pipeline_core import records
from pipeline_core.jobs import ObjectRef, WorkMessage
from pipeline_core.pipeline import PipelineConfig, ScalingPolicy, StepConfig
from pipeline_core.segment_plan import SegmentPlan, VideoTimeline

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("pipeline_core", "worker", "stream_router", "scaler", "gpupipe", "local_runtime")
ALLOWED = {ROOT / "pipeline_core" / "records.py"}
RAW_READERS = {"from_dynamo", "from_wire"}  # DynamoDB's values -> Python: the table layer and records only
RAW_READER_HOMES = {ROOT / "pipeline_core" / "dynamo", ROOT / "pipeline_core" / "records.py"}


def _keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield key
            yield from _keys(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _keys(inner)


def item_names() -> set[str]:
    """Every attribute name the records module writes or reads through a path."""
    paths = {
        attr.name
        for location in (records.RecordAt, records.StepAt, records.SegmentAt, records.JobAt)
        for attr in vars(location).values()
        if isinstance(attr, records._Attr)
    }
    obj = ObjectRef("b", "k", "v", 1)
    built = [
        records.new_job_item(obj, ["s"], 0.0),
        records.claimed_job_item(obj, "s", "w", "m", 0.0, 1.0),
        records.plan_item(SegmentPlan(VideoTimeline(10, 1000, 10), 10)),
    ]
    return paths | {key for item in built for key in _keys(item)} - {"s"}


AWS_SERVICES = ("dynamodb", "dynamodbstreams", "ec2", "ecr", "ecs", "iam", "lambda", "s3", "service-quotas", "sns", "sqs", "sts")


def aws_response_names() -> set[str]:
    """The member names of every response the code's AWS clients can return (botocore's service models)."""
    loader = botocore.loaders.Loader()
    names: set[str] = set()
    for service in AWS_SERVICES:
        shapes = loader.load_service_model(service, "service-2")["shapes"]
        names |= {member for shape in shapes.values() for member in shape.get("members", {})}
    return names


def shared_names() -> set[str]:
    """Field names of the other documents the code reads, which a subscript cannot tell from an item's."""
    schema = json.loads((ROOT / "worker" / "result.schema.json").read_text())
    event = json.loads((ROOT / "tests" / "fixtures" / "events" / "s3_put_two_records.json").read_text())
    dataclass_fields = {f.name for cls in (WorkMessage, PipelineConfig, StepConfig, ScalingPolicy) for f in dataclasses.fields(cls)}
    schema_fields = {key for key in _keys(schema) if not key.startswith("$")}
    return schema_fields | set(_keys(event)) | dataclass_fields | aws_response_names() | {"name"}


ITEM_ONLY = item_names() - shared_names()


def _string_key(node: ast.AST) -> str | None:
    """The string an expression indexes with: ``x["key"]`` or ``x.get("key", ...)``."""
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
        return node.slice.value
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("get", "pop", "setdefault")
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return node.args[0].value
    return None


def _modules() -> Iterator[Path]:
    for package in SHIPPED:
        yield from sorted((ROOT / package).rglob("*.py"))


def test_the_check_knows_the_names_that_mark_an_item() -> None:
    assert {"step_names", "segment_count", "segments_done", "lease_expires_at", "result_file", "attempts", "carrier"} <= ITEM_ONLY


def test_no_module_but_records_indexes_an_item_by_its_attribute_names() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno} [{key!r}]"
        for path in _modules()
        if path not in ALLOWED
        for node in ast.walk(ast.parse(path.read_text()))
        if (key := _string_key(node)) in ITEM_ONLY
    ]
    assert found == [], "read items through pipeline_core.records: " + ", ".join(found)


def test_only_the_table_layer_and_records_decode_what_dynamodb_returns() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.id}"
        for path in _modules()
        if not any(path == home or home in path.parents for home in RAW_READER_HOMES)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Name) and node.id in RAW_READERS
    ]
    assert found == [], found


def test_the_check_finds_a_raw_read(tmp_path: Path) -> None:
    """The scan itself: the code that read raw items before records existed is caught."""
    source = 'def old(job):\n    return [job["steps"][n]["state"] for n in job["step_names"]] + [job["steps"]["s"].get("result_file")]\n'
    keys = [key for node in ast.walk(ast.parse(source)) if (key := _string_key(node)) in ITEM_ONLY]
    assert sorted(keys) == ["result_file", "state", "step_names"]
