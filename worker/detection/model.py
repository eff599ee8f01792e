"""The detector interface, detections, and the registry that builds detectors from configuration."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from worker.plugins import resolve

Colour = Literal["rgb", "bgr"]


@dataclass(frozen=True)
class Detection:
    """One object in one frame; the box is normalised to [0, 1]: x_min, y_min, x_max, y_max."""

    label: str
    score: float
    box: tuple[float, float, float, float]

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "score": round(self.score, 4), "box": [round(v, 4) for v in self.box]}


def normalised_box(x_min: float, y_min: float, x_max: float, y_max: float, width: int, height: int) -> tuple[float, float, float, float]:
    """Pixel corners -> [0, 1] corners, clipped to the frame."""

    def clip(value: float) -> float:
        return min(1.0, max(0.0, value))

    return (clip(x_min / width), clip(y_min / height), clip(x_max / width), clip(y_max / height))


class Detector(Protocol):
    """Finds objects in a batch of same-sized frames given in the detector's own colour order."""

    name: str
    version: str
    labels: tuple[str, ...]
    colour: Colour
    device: str  # where it runs, as result.json records it: "CPU", "GPU:0", ...

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]: ...


DetectorFactory = Callable[[Mapping[str, Any]], Detector]

# name -> "module:attribute", imported on first use so that a worker pays only for what it runs.
REGISTRY: dict[str, str] = {
    "people-ssdlite": "worker.detection.detectors:SsdLitePeopleDetector",
    "people-hog": "worker.detection.detectors:HogPeopleDetector",
    "faces-mtcnn": "worker.detection.detectors:MtcnnFaceDetector",
    "tf-savedmodel": "worker.detection.detectors:SavedModelDetector",
}


def build_detector(spec: Mapping[str, Any]) -> Detector:
    """A detector from ``{"name": ..., **options}``; the name is registered or ``module:attribute``."""
    name = spec.get("name")
    if not isinstance(name, str):
        raise ValueError(f"detector spec needs a name: {dict(spec)}")
    factory: DetectorFactory = resolve(name, REGISTRY, "detector")
    return factory({key: value for key, value in spec.items() if key != "name"})
