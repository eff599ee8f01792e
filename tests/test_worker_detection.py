"""The detect processor inside real worker processes: result JSON valid against the schema, pictures beside it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from jsonschema import Draft202012Validator

from tests.support.aws import StepStack
from tests.support.workers import wait_for
from tools import sample_media

pytestmark = pytest.mark.workers

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "worker" / "result.schema.json").read_text())
STEP = "detect"


def test_the_schema_is_valid_json_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("name", ["street scene.mp4", "person.jpg"])
def test_worker_results_validate_against_the_schema_and_carry_pictures(stack: StepStack, spawn, tmp_path: Path, name: str) -> None:
    local = tmp_path / name
    if name.endswith(".mp4"):
        sample_media.video(local, frames=60)
    else:
        sample_media.scene_image(local)
    key = f"uploads/{name}"
    stack.put(key, local.read_bytes())
    stack.send(stack.s3_event(key))
    options = {"detectors": [{"name": "people-hog"}, {"name": "faces-mtcnn"}], "sample_fps": 2, "batch_size": 4}
    worker = spawn(stack.worker_env(STEP, PROCESSOR="detect", PROCESSOR_OPTIONS=json.dumps(options), TF_CPP_MIN_LOG_LEVEL="2"))
    wait_for(lambda: worker.events("step done") or worker.events("step failed"), 90, what="the step to finish")
    assert not worker.events("step failed"), worker.events("step failed")
    job = stack.job(key)
    result = stack.committed_result(job, STEP)
    prefix = stack.committed_prefix(job, STEP)
    errors = sorted(Draft202012Validator(SCHEMA).iter_errors(result), key=str)
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]
    output = result["output"]
    # This machine has no GPU: every model says it ran on the CPU, in the result and in the start-up log.
    assert {model["name"]: model["device"] for model in output["models"]} == {"people-hog": "CPU", "faces-mtcnn": "CPU"}
    ready = {event["detector"]: event["device"] for event in worker.events("detector ready")}
    assert ready == {"people-hog": "CPU", "faces-mtcnn": "CPU"}
    assert output["summary"]["face"]["max_count"] == 1
    # a photo has no timeline (one point in time): one PUT fewer per image
    assert result["files"] == (["contact-sheet.jpg", "timeline.png"] if name.endswith(".mp4") else ["contact-sheet.jpg"])
    assert {"download", "process", "upload"} <= set(result["timings"])
    for picture in result["files"]:
        body = stack.aws["s3"].get_object(Bucket=stack.bucket, Key=prefix + picture)["Body"].read()
        assert cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR) is not None
