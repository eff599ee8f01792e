"""The detection engine on real photos and generated videos: what a user would check."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import boto3
import cv2
import numpy as np
import pytest

from bench.detection_bench import frame_agrees
from tests.support.media import EMPTY, NOT_MEDIA, png
from tests.support.savedmodel import LABEL_MAP_PBTXT, build_detection_savedmodel
from tools import sample_media
from worker.detection.batch_size import choose_batch_size
from worker.detection.detectors import device_label
from worker.detection.engine import DetectionProcessor
from worker.detection.model import build_detector
from worker.errors import PermanentError
from worker.models import local_models
from worker.processing import StepContext

pytestmark = pytest.mark.integration


def run(processor: DetectionProcessor, path: Path) -> dict:
    workdir = path.parent / f"work-{path.stem}"
    workdir.mkdir(exist_ok=True)
    output = processor.process(path, StepContext("0" * 32, "detect", "bucket", path.name, "v1", 1, workdir))
    pictures = {"contact-sheet.jpg", "timeline.png"} if output.document["media"]["kind"] == "video" else {"contact-sheet.jpg"}
    assert set(output.files) == pictures and set(output.document["pictures"].values()) == pictures
    for picture in output.files.values():
        assert cv2.imread(str(picture)) is not None, f"{picture.name} is not a readable image"
    return output.document


@pytest.fixture(scope="module")
def people_and_faces() -> DetectionProcessor:
    return DetectionProcessor({"detectors": [{"name": "people-hog"}, {"name": "faces-mtcnn"}], "batch_size": 4})


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    sample_media.image(folder / "astronaut.jpg")
    sample_media.image(folder / "astronaut.png")
    sample_media.image(folder / "astronaut.webp")
    sample_media.image(folder / "coffee.png", "coffee")
    sample_media.image(folder / "chelsea.jpg", "chelsea")
    sample_media.scene_image(folder / "person.jpg")
    sample_media.video(folder / "pan.mp4", frames=90, fps=30)
    sample_media.video(folder / "pan.avi", frames=60, fps=30)
    return folder


def test_a_portrait_has_one_face_where_her_face_is(people_and_faces, media: Path) -> None:
    document = run(people_and_faces, media / "astronaut.jpg")
    assert document["media"]["kind"] == "image"
    assert (document["media"]["width"], document["media"]["height"]) == (512, 512)
    assert document["summary"]["face"]["max_count"] == 1
    [face] = [d for d in document["frames"][0]["detections"] if d["label"] == "face"]
    x0, y0, x1, y1 = face["box"]
    # Eileen Collins' face sits in the upper middle-left of the portrait.
    assert 0.3 < (x0 + x1) / 2 < 0.55 and 0.1 < (y0 + y1) / 2 < 0.35
    assert face["score"] > 0.9


def test_a_person_before_a_wall_is_one_person_with_her_face_above_her_body(people_and_faces, media: Path) -> None:
    detections = run(people_and_faces, media / "person.jpg")["frames"][0]["detections"]
    [person] = [d for d in detections if d["label"] == "person"]
    [face] = [d for d in detections if d["label"] == "face"]
    px0, py0, px1, py1 = person["box"]
    fx0, fy0, fx1, fy1 = face["box"]
    # HOG is a pedestrian model: on a portrait its box covers the torso, under the face, in the same column.
    assert px0 <= (fx0 + fx1) / 2 <= px1
    assert fy0 < py0 + 0.1 and (fy0 + fy1) / 2 < py1
    assert 0.35 < (px0 + px1) / 2 < 0.65  # the photo is centred


@pytest.mark.parametrize("name", ["coffee.png", "chelsea.jpg"])
def test_photos_without_people_have_no_faces_and_no_people(people_and_faces, media: Path, name: str) -> None:
    summary = run(people_and_faces, media / name)["summary"]
    assert summary["face"]["max_count"] == 0
    assert summary["person"]["max_count"] == 0
    assert summary["face"]["first_seen"] is None


def test_jpeg_png_and_webp_give_the_same_faces(people_and_faces, media: Path) -> None:
    counts = {
        suffix: run(people_and_faces, media / f"astronaut.{suffix}")["summary"]["face"]["max_count"] for suffix in ("jpg", "png", "webp")
    }
    assert counts == {"jpg": 1, "png": 1, "webp": 1}


def test_video_frames_are_sampled_at_the_configured_rate(media: Path) -> None:
    per_second = run(DetectionProcessor({"detectors": [{"name": "people-hog"}], "sample_fps": 2}), media / "pan.mp4")
    assert [f["index"] for f in per_second["frames"]] == [0, 15, 30, 45, 60, 75]
    assert [f["timestamp"] for f in per_second["frames"]] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert per_second["media"]["frames_read"] == 90 and per_second["media"]["fps"] == 30
    every_n = run(DetectionProcessor({"detectors": [{"name": "people-hog"}], "every_n_frames": 40}), media / "pan.mp4")
    assert [f["index"] for f in every_n["frames"]] == [0, 40, 80]
    assert every_n["sampling"]["step"] == 40
    capped = run(DetectionProcessor({"detectors": [{"name": "people-hog"}], "every_n_frames": 10, "max_frames": 4}), media / "pan.avi")
    assert [f["index"] for f in capped["frames"]] == [0, 10, 20, 30]


def test_faces_are_followed_through_a_video_and_batching_changes_nothing(media: Path) -> None:
    options = {"detectors": [{"name": "faces-mtcnn"}], "sample_fps": 3}
    one = run(DetectionProcessor({**options, "batch_size": 1}), media / "pan.mp4")
    eight = run(DetectionProcessor({**options, "batch_size": 8}), media / "pan.mp4")
    assert one["summary"]["face"]["frames_with"] == len(one["frames"]) == 9
    assert [len(f["detections"]) for f in one["frames"]] == [len(f["detections"]) for f in eight["frames"]]
    boxes_one = np.array([f["detections"][0]["box"] for f in one["frames"]])
    boxes_eight = np.array([f["detections"][0]["box"] for f in eight["frames"]])
    assert np.allclose(boxes_one, boxes_eight, atol=0.02)
    # The face moves left to right with the person.
    centres = (boxes_one[:, 0] + boxes_one[:, 2]) / 2
    assert centres[-1] - centres[0] > 0.3


@pytest.mark.parametrize("size", [1, 8, 100])
def test_tiny_images_are_processed_without_crashing(people_and_faces, tmp_path: Path, size: int) -> None:
    # A 1x1 image used to abort the process inside OpenCV's HOG (heap corruption).
    path = tmp_path / f"tiny-{size}.png"
    path.write_bytes(png(size, size))
    summary = run(people_and_faces, path)["summary"]
    assert summary["person"]["max_count"] == 0 and summary["face"]["max_count"] == 0


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.mp4", EMPTY, "empty file (0 bytes)"),
        ("notes.jpg", NOT_MEDIA, "not a supported image or video"),
        ("broken.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40, "corrupt"),
        ("broken.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 64, "corrupt or unreadable jpeg image"),
    ],
)
def test_bad_files_are_clear_permanent_errors(people_and_faces, tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(PermanentError, match=re.escape(message)):
        run(people_and_faces, path)


@pytest.mark.parametrize(
    ("suffix", "message"),
    [("avi", "truncated avi video: decoded 20 of the 60 frames its header lists"), ("mp4", "corrupt or unreadable mp4 video")],
)
def test_a_truncated_video_is_a_permanent_error(tmp_path: Path, suffix: str, message: str) -> None:
    whole = sample_media.video(tmp_path / f"whole.{suffix}", frames=60).read_bytes()
    cut = tmp_path / f"cut.{suffix}"
    cut.write_bytes(whole[: len(whole) // 3])
    with pytest.raises(PermanentError, match=re.escape(message)):
        run(DetectionProcessor({"detectors": [{"name": "people-hog"}], "every_n_frames": 5}), cut)


@pytest.fixture(scope="module")
def savedmodel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("savedmodel")
    build_detection_savedmodel(folder / "model")
    (folder / "label_map.pbtxt").write_text(LABEL_MAP_PBTXT)
    return folder


def test_a_savedmodel_from_a_local_path_runs_with_its_label_map_and_class_filter(savedmodel: Path, media: Path) -> None:
    spec = {"name": "tf-savedmodel", "model": str(savedmodel / "model"), "label_map": str(savedmodel / "label_map.pbtxt")}
    document = run(
        DetectionProcessor({"detectors": [{**spec, "classes": ["person"], "min_score": 0.1}], "sample_fps": 2}), media / "pan.mp4"
    )
    assert document["models"][0]["labels"] == ["person"]
    for frame in document["frames"]:
        [person] = frame["detections"]
        assert person["label"] == "person"
        assert person["box"] == [0.2, 0.1, 0.7, 0.6]  # y/x corners turned into x_min, y_min, x_max, y_max
    unfiltered = build_detector({**spec, "min_score": 0.5})
    labels = sorted(d.label for d in unfiltered.detect([np.full((32, 32, 3), 255, np.uint8)])[0])
    assert labels == ["dog", "person"]


def test_a_savedmodel_named_by_an_s3_uri_is_copied_by_the_worker_and_loads(
    savedmodel: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="models")
    for file in (savedmodel / "model").rglob("*"):
        if file.is_file():
            s3.upload_file(str(file), "models", f"detectors/people/{file.relative_to(savedmodel / 'model').as_posix()}")
    spec = {"name": "tf-savedmodel", "model": "s3://models/detectors/people", "label_map": {"1": "person"}, "classes": ["person"]}
    with pytest.raises(ValueError, match="the worker copies it first"):
        build_detector(spec)  # a processor never calls S3 itself
    [local] = local_models({"detectors": [spec]})["detectors"]  # what the worker does with its options at start-up
    detector = build_detector(local)
    assert detector.version == "savedmodel:people"
    [found] = detector.detect([np.full((16, 16, 3), 200, np.uint8)])
    assert [d.label for d in found] == ["person"]


def test_every_model_says_where_it_ran_and_on_this_cpu_that_is_the_cpu(savedmodel: Path, media: Path) -> None:
    detectors = [
        {"name": "people-hog"},
        {"name": "faces-mtcnn"},
        {"name": "tf-savedmodel", "model": str(savedmodel / "model"), "label_map": {"1": "person"}},
    ]
    document = run(DetectionProcessor({"detectors": detectors}), media / "person.jpg")
    devices = [(m["name"], m["device"]) for m in document["models"]]
    assert devices == [("people-hog", "CPU"), ("faces-mtcnn", "CPU"), ("tf-savedmodel", "CPU")]


@pytest.mark.parametrize(
    ("placement", "label"),
    [
        ("CPU:0", "CPU"),
        ("GPU:0", "GPU:0"),
        ("/job:localhost/replica:0/task:0/device:GPU:1", "GPU:1"),
        ("/job:localhost/replica:0/task:0/device:CPU:0", "CPU"),
        ("", "CPU"),
    ],
)
def test_tensorflow_device_strings_become_cpu_or_gpu_n(placement: str, label: str) -> None:
    assert device_label(placement) == label


def test_the_batch_is_one_frame_on_a_cpu_and_what_fits_the_card_on_a_gpu() -> None:
    full_hd, small = 1920 * 1080, 960 * 540
    assert choose_batch_size(["CPU", "CPU"], full_hd) == 1
    on_t4 = choose_batch_size(["GPU:0"], full_hd, gpu_memory_mib=16 * 1024)
    assert on_t4 == 14  # 4 GiB / (1920 x 1080 x 3 bytes x 48)
    assert choose_batch_size(["GPU:0"], small, gpu_memory_mib=16 * 1024) == 32  # capped
    assert choose_batch_size(["GPU:0", "GPU:0"], full_hd, gpu_memory_mib=16 * 1024) < on_t4  # two models share the card
    assert choose_batch_size(["GPU:0"], full_hd, gpu_memory_mib=24 * 1024) > on_t4  # an A10G holds more
    assert choose_batch_size(["GPU:0"], 8000 * 8000, gpu_memory_mib=1024) == 1  # never zero
    assert choose_batch_size(["GPU:0"], full_hd) == on_t4  # unknown card: assume a T4


def test_auto_batch_is_recorded_and_a_fixed_batch_is_kept(media: Path) -> None:
    auto = run(DetectionProcessor({"detectors": [{"name": "people-hog"}], "sample_fps": 2}), media / "pan.mp4")
    assert auto["sampling"]["batch_size"] == 1  # the CPU
    fixed = run(DetectionProcessor({"detectors": [{"name": "people-hog"}], "sample_fps": 2, "batch_size": 3}), media / "pan.mp4")
    assert fixed["sampling"]["batch_size"] == 3
    assert [f["detections"] for f in auto["frames"]] == [f["detections"] for f in fixed["frames"]]


def test_a_model_path_may_name_the_models_uri_and_an_unset_one_is_a_clear_error(savedmodel: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELS_URI", f"{savedmodel}/")
    detector = build_detector({"name": "tf-savedmodel", "model": "${MODELS_URI}model", "label_map": {"1": "person"}})
    assert detector.version == "savedmodel:model"
    monkeypatch.delenv("MODELS_URI")
    with pytest.raises(ValueError, match="names an environment variable that is not set"):
        build_detector({"name": "tf-savedmodel", "model": "${MODELS_URI}model"})


def person(box: list[float]) -> dict:
    return {"label": "person", "score": 0.9, "box": box}


def test_frames_agree_when_counts_match_and_every_box_pairs_at_iou_one_half() -> None:
    a, b = [0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]
    nudged = [0.12, 0.1, 0.52, 0.5]  # IoU 0.9
    assert frame_agrees([person(a), person(b)], [person(b), person(nudged)])
    assert not frame_agrees([person(a)], [person(a), person(b)]), "a different count"
    assert not frame_agrees([person(a)], [person([0.3, 0.3, 0.7, 0.7])]), "IoU 0.14"
    assert not frame_agrees([person(a), person(nudged)], [person(a), person(b)]), "two boxes cannot share one"
    assert not frame_agrees([person(a)], [{**person(a), "label": "face"}]), "a different label"
    assert frame_agrees([], [])


def test_unknown_detector_names_say_what_exists() -> None:
    with pytest.raises(ValueError, match=r"unknown detector 'yolo'.*people-hog"):
        build_detector({"name": "yolo"})


@pytest.fixture(autouse=True)
def quiet_tensorflow(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    yield
