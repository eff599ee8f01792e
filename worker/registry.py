"""The processors by name: ``PROCESSOR`` names a registered one or a ``package.module:attribute`` plugin class.

Processors are imported on use (OpenCV and TensorFlow load only in workers that detect), so the worker's loop never
imports one: it asks ``load_processor``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from worker.plugins import resolve
from worker.processing import Processor

ProcessorFactory = Callable[[Mapping[str, Any]], Processor]
ANNOTATE = "worker.annotate:wrap"  # the wrapper that adds annotated media to a processor's output

# name -> "module:attribute", imported on use: OpenCV and TensorFlow load only in workers that detect.
REGISTRY: dict[str, str] = {
    "media-info": "worker.media_info:MediaInfoProcessor",
    "detect": "worker.detection.engine:DetectionProcessor",
}


def load_processor(spec: str, options: Mapping[str, Any], annotate: bool = False) -> Processor:
    """A registered processor by name, or a plugin by ``module:attribute``; with ``annotate``, one that also writes
    the annotated image or video (worker/annotate.py)."""
    factory: ProcessorFactory = resolve(spec, REGISTRY, "processor")
    processor = factory(options)
    if annotate:
        wrap: Callable[[Processor], Processor] = resolve(ANNOTATE, {}, "annotation")
        return wrap(processor)
    return processor
