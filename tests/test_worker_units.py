"""Pure parts of the worker: settings, message parsing, settling a message, error classes, media sniffing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline_core.bodies import InvalidMessage, parse_body
from pipeline_core.jobs import ObjectRef, WorkMessage
from tests.support.media import EMPTY, NOT_MEDIA, png
from worker.config import ConfigError, WorkerConfig
from worker.errors import PermanentError, Severity, TransientError, classify
from worker.mediatype import require_media, sniff_media
from worker.messages import ItemResult, MessageAction, Outcome, settle
from worker.registry import load_processor

pytestmark = pytest.mark.unit

EVENTS = Path(__file__).parent / "fixtures" / "events"
REQUIRED = {"QUEUE_URL": "q", "JOBS_TABLE": "t", "STEP_NAME": "people", "RESULTS_BUCKET": "b"}


def test_config_reads_defaults_and_overrides() -> None:
    config = WorkerConfig.from_env({**REQUIRED, "VISIBILITY_TIMEOUT": "90", "RESULTS_PREFIX": "/out", "PROCESSOR_OPTIONS": '{"x": 1}'})
    assert config.visibility_timeout == 90
    assert config.heartbeat_seconds == 30
    assert config.results_prefix == "out/"
    assert config.processor_options == {"x": 1}
    assert config.wait_time_seconds == 20


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "missing required environment variables: QUEUE_URL, JOBS_TABLE, STEP_NAME, RESULTS_BUCKET"),
        ({**REQUIRED, "VISIBILITY_TIMEOUT": "soon"}, "VISIBILITY_TIMEOUT must be an integer"),
        ({**REQUIRED, "WAIT_TIME_SECONDS": "30"}, "WAIT_TIME_SECONDS must be between 0 and 20"),
        ({**REQUIRED, "PROCESSOR_OPTIONS": "[1]"}, "PROCESSOR_OPTIONS must be a JSON object"),
        ({**REQUIRED, "VISIBILITY_TIMEOUT": "30", "HEARTBEAT_SECONDS": "30"}, "must be shorter than VISIBILITY_TIMEOUT"),
    ],
)
def test_config_errors_say_what_is_wrong(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        WorkerConfig.from_env(env)


def test_parse_router_message() -> None:
    body = WorkMessage.for_job(ObjectRef("b", "a b.jpg", "v1"), "people").to_body()
    parsed = parse_body(body, "people")
    assert [(item.obj.key, item.step, item.from_s3_event) for item in parsed.items] == [("a b.jpg", "people", False)]


def test_parse_raw_s3_event_gives_one_item_per_created_object() -> None:
    parsed = parse_body((EVENTS / "s3_put_two_records.json").read_text(), "people")
    assert [item.obj.key for item in parsed.items] == ["uploads/holiday photos/Café + friends.jpg", "uploads/日本/street.mp4"]
    assert all(item.from_s3_event and item.step == "people" for item in parsed.items)


def test_parse_test_event() -> None:
    parsed = parse_body((EVENTS / "s3_test_event.json").read_text(), "people")
    assert parsed.is_test_event and parsed.items == ()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "JSON list"),
        ('{"hello": "world"}', "not a gpu-pipeline.step message"),
        (WorkMessage.for_job(ObjectRef("b", "k", "v"), "faces").to_body(), "step 'faces' reached a queue of step 'people'"),
        (json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {}}]}), "malformed S3"),
    ],
)
def test_parse_rejects_bodies_it_cannot_run(body: str, reason: str) -> None:
    with pytest.raises(InvalidMessage, match=reason):
        parse_body(body, "people")


@pytest.mark.parametrize(
    ("outcomes", "action"),
    [
        ([Outcome.DONE], MessageAction(delete=True)),
        ([Outcome.FAILED, Outcome.SKIPPED, Outcome.DONE], MessageAction(delete=True)),
        ([], MessageAction(delete=True)),
        ([Outcome.DONE, (Outcome.RETRY, 10)], MessageAction(requeue_delay=10)),
        ([(Outcome.POSTPONE, 42), (Outcome.RETRY, 10)], MessageAction(requeue_delay=42)),
        ([Outcome.LOST, (Outcome.RETRY, 5)], MessageAction(requeue_delay=5)),
        ([Outcome.LOST, Outcome.DONE], MessageAction()),
    ],
)
def test_settle_deletes_settled_messages_and_requeues_those_to_run_again(outcomes: list, action: MessageAction) -> None:
    results = [ItemResult(*o) if isinstance(o, tuple) else ItemResult(o) for o in outcomes]
    assert settle(results) == action


def test_only_input_errors_are_permanent() -> None:
    assert classify(PermanentError("corrupt")) == Severity.PERMANENT
    assert classify(TransientError("throttled")) == Severity.TRANSIENT
    assert classify(MemoryError()) == Severity.TRANSIENT
    assert classify(RuntimeError("bug")) == Severity.TRANSIENT


def test_media_sniffing(tmp_path: Path) -> None:
    assert sniff_media(png()) == ("image", "png")
    assert sniff_media(b"\x00\x00\x00\x18ftypmp42") == ("video", "mp4")
    assert sniff_media(NOT_MEDIA) is None
    empty, text = tmp_path / "empty", tmp_path / "doc.pdf"
    empty.write_bytes(EMPTY)
    text.write_bytes(NOT_MEDIA)
    with pytest.raises(PermanentError, match="empty file"):
        require_media(empty)
    with pytest.raises(PermanentError, match="not a supported image or video"):
        require_media(text)


def test_load_processor_by_name_or_import_path() -> None:
    assert load_processor("media-info", {}).name == "media-info"
    assert load_processor("tests.support.plugins:make_slow", {"seconds": 0}).name == "slow"
    with pytest.raises(ValueError, match="unknown processor 'nope'"):
        load_processor("nope", {})


def test_healthcheck_follows_the_liveness_file(tmp_path: Path) -> None:
    from worker.health import is_healthy, touch

    alive = tmp_path / "worker.alive"
    assert not is_healthy(alive, max_age=300)
    touch(alive)
    assert is_healthy(alive, max_age=300)
    assert not is_healthy(alive, max_age=300, now=alive.stat().st_mtime + 301)
