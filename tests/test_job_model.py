"""The shared job model: states, transitions, ids, messages and S3 event parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline_core.graph import Graph
from pipeline_core.jobs import (
    ObjectRef,
    WorkMessage,
    job_id_for,
    result_key,
)
from pipeline_core.records import new_job_item
from pipeline_core.s3events import created_objects, is_s3_event, is_test_event

pytestmark = pytest.mark.unit

EVENTS = Path(__file__).parent / "fixtures" / "events"


def load_event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def test_job_id_is_stable_per_object_version() -> None:
    first = job_id_for("bucket", "a.jpg", "v1")
    assert first == job_id_for("bucket", "a.jpg", "v1")
    assert first != job_id_for("bucket", "a.jpg", "v2")
    assert first != job_id_for("bucket", "b.jpg", "v1")
    assert first != job_id_for("other", "a.jpg", "v1")


def test_new_job_queues_its_roots_and_the_rest_wait_on_their_parents() -> None:
    item = new_job_item(ObjectRef("b", "k.jpg", "v1", 10), ["people", "faces"], now=1000.0, ttl_days=1)
    assert item["step_names"] == ["people", "faces"]
    assert {name: (step["state"], step["after"]) for name, step in item["steps"].items()} == {
        "people": ("pending", []),
        "faces": ("waiting", ["people"]),
    }
    assert item["status"] == "pending"
    assert item["expires_at"] == 1000 + 86400
    graph = Graph.of([("people", ()), ("faces", ()), ("anonymize", ("people", "faces"))])
    item = new_job_item(ObjectRef("b", "k.jpg", "v1", 10), graph, now=1000.0)
    assert {name: step["state"] for name, step in item["steps"].items()} == {
        "people": "pending",
        "faces": "pending",
        "anonymize": "waiting",
    }
    with pytest.raises(ValueError, match="more than once"):
        new_job_item(ObjectRef("b", "k", "v"), ["a", "a"], now=0)
    with pytest.raises(ValueError, match="at least one"):
        new_job_item(ObjectRef("b", "k", "v"), [], now=0)


def test_result_key_is_unique_to_the_version_and_the_attempt() -> None:
    v1, v2 = ObjectRef("b", "uploads/a b.jpg", "v1", versioned=True), ObjectRef("b", "uploads/a b.jpg", "v2", versioned=True)
    assert result_key("results/", v1.key, v1.job_id, "people", 2) == f"results/uploads/a b.jpg/{v1.job_id}/people/attempt-2/result.json"
    keys = {result_key("results/", obj.key, obj.job_id, "people", attempt) for obj in (v1, v2) for attempt in (1, 2)}
    assert len(keys) == 4


def test_work_message_round_trips_and_rejects_strangers() -> None:
    message = WorkMessage.for_job(ObjectRef("b", "uploads/ü +.jpg", "v1"), "faces")
    assert WorkMessage.from_dict(json.loads(message.to_body())) == message
    with pytest.raises(ValueError, match="not a"):
        WorkMessage.from_dict({"job_id": "x"})
    body = json.loads(message.to_body())
    del body["bucket"]
    with pytest.raises(ValueError, match="lacks bucket"):
        WorkMessage.from_dict(body)


def test_s3_test_event_yields_no_objects() -> None:
    event = load_event("s3_test_event.json")
    assert is_test_event(event) and is_s3_event(event)
    assert created_objects(event) == []


def test_s3_event_keys_are_url_decoded_and_only_creations_count() -> None:
    objects = created_objects(load_event("s3_put_two_records.json"))
    assert [obj.key for obj in objects] == ["uploads/holiday photos/Café + friends.jpg", "uploads/日本/street.mp4"]
    assert objects[0].version == "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"  # the version id wins over the ETag
    assert objects[1].version == "9b2cf535f27731c974343645a3985328-9"  # the ETag, quotes stripped
    assert objects[1].size == 73400320
    assert objects[0].job_id != objects[1].job_id
