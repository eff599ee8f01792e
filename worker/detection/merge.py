"""Segments of a long video, for the detect processor: the segment's pictures, and the whole video's result from its segments.

A segment writes, instead of its own contact sheet and timeline, the thumbnails it would have put on
a sheet (one JPEG strip, ``tiles.jpg``, with their frame indices in the document). The merge builds
the document of the whole video: frames in order, the summary over all of them (computed as one pass
computes it), media and sampling figures summed, each segment's timings as extra fields, and the
contact sheet and timeline from every segment.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from worker.detection.pictures import EvenSample, contact_sheet, timeline
from worker.processing import SegmentPart, StepOutput

TILES = "tiles.jpg"


def segment_tiles(sheet: EvenSample, frames: Sequence[Mapping[str, Any]], workdir: Path) -> tuple[dict[str, Path], list[int]]:
    """The segment's contact-sheet candidates as one vertical JPEG strip, and their frame indices."""
    if not sheet.items:
        return {}, []
    picks = range(len(sheet.items))
    if len(sheet.items) > sheet.size:
        picks = np.linspace(0, len(sheet.items) - 1, sheet.size).round().astype(int).tolist()
    chosen = [sheet.items[i] for i in picks]
    strip = np.vstack([np.asarray(tile) for _, tile in chosen])
    path = workdir / TILES
    cv2.imwrite(str(path), strip, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return {TILES: path}, [int(frames[position]["index"]) for position, _ in chosen]


def summarize(frames: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> dict[str, Any]:
    """Per label over every sampled frame: what one pass's summary holds."""
    total = max(1, len(frames))
    summary = {}
    for label in labels:
        counts = [sum(1 for d in frame["detections"] if d["label"] == label) for frame in frames]
        seen = [frame["timestamp"] for frame, count in zip(frames, counts, strict=True) if count]
        summary[label] = {
            "max_count": max(counts, default=0),
            "mean_count": round(sum(counts) / total, 4),
            "frames_with": sum(1 for c in counts if c),
            "first_seen": seen[0] if seen else None,
            "last_seen": seen[-1] if seen else None,
        }
    return summary


def merge_segments(
    parts: Sequence[SegmentPart], labels: Sequence[str], sheet_frames: int, workdir: Path, contact_sheet_name: str, timeline_name: str
) -> StepOutput:
    started = time.perf_counter()
    parts = sorted(parts, key=lambda part: part.segment.index)
    documents = [part.result["output"] for part in parts]
    frames = [frame for document in documents for frame in document["frames"]]
    indexes = [frame["index"] for frame in frames]
    if any(later <= earlier for earlier, later in pairwise(indexes)):
        raise ValueError("segments' frames overlap or are out of order: the plan and the readers disagree")
    first = documents[0]
    tiles: list[tuple[int, np.ndarray]] = []
    for part, document in zip(parts, documents, strict=True):
        if TILES not in part.files:
            continue
        strip = cv2.imread(str(part.files[TILES]), cv2.IMREAD_COLOR)
        if strip is None:
            raise ValueError(f"the segment's contact-sheet strip {part.files[TILES]} is not a readable JPEG")
        indexes_here = document.get("tiles", [])
        height = strip.shape[0] // max(1, len(indexes_here))
        tiles += [(index, strip[n * height : (n + 1) * height]) for n, index in enumerate(indexes_here)]
    tiles.sort(key=lambda pair: pair[0])
    if len(tiles) > sheet_frames:
        tiles = [tiles[i] for i in np.linspace(0, len(tiles) - 1, sheet_frames).round().astype(int)]
    counts = {label: [sum(1 for d in frame["detections"] if d["label"] == label) for frame in frames] for label in labels}
    files = {
        contact_sheet_name: contact_sheet([tile for _, tile in tiles], workdir / contact_sheet_name),
        timeline_name: timeline([frame["timestamp"] for frame in frames], counts, workdir / timeline_name),
    }

    def total(key: str) -> float:
        return round(sum(float(document["timings"].get(key, 0.0)) for document in documents), 4)

    document = {
        "media": {**first["media"], "frames_read": sum(int(d["media"]["frames_read"]) for d in documents)},
        "sampling": {**first["sampling"], "sampled_frames": len(frames)},
        "models": first["models"],
        "frames": frames,
        "summary": summarize(frames, labels),
        # Summed over the segments (which ran side by side), and the merge's own time.
        "timings": {"decode": total("decode"), "inference": total("inference"), "wall": total("wall")},
        "pictures": {"contact_sheet": contact_sheet_name, "timeline": timeline_name},
    }
    document["timings"]["merge"] = round(time.perf_counter() - started, 4)
    return StepOutput(document=document, files=files)
