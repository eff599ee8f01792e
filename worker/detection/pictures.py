"""Pictures beside the JSON: a contact sheet of sampled frames with their boxes, and a timeline of counts."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from worker.detection.model import Detection

# BGR colours per label, stable across runs.
PALETTE = [(40, 200, 40), (40, 40, 230), (230, 140, 30), (200, 40, 200), (30, 200, 220), (120, 120, 120)]


def label_colours(labels: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    return {label: PALETTE[index % len(PALETTE)] for index, label in enumerate(sorted(labels))}


class EvenSample:
    """Keeps an evenly spaced subset of at most 2 x ``size`` items from a stream of unknown length."""

    def __init__(self, size: int):
        self.size = max(1, size)
        self.stride = 1
        self.items: list[tuple[int, object]] = []
        self.seen = 0

    def offer(self, make: object) -> bool:
        """Whether the next item is kept; ``make`` is called only when it is."""
        position = self.seen
        self.seen += 1
        if position % self.stride:
            return False
        self.items.append((position, make() if callable(make) else make))
        if len(self.items) > 2 * self.size:
            self.stride *= 2
            self.items = [(p, item) for p, item in self.items if p % self.stride == 0]
        return True

    def chosen(self) -> list[object]:
        """At most ``size`` items, evenly spread over what was kept."""
        if len(self.items) <= self.size:
            return [item for _, item in self.items]
        picks = np.linspace(0, len(self.items) - 1, self.size).round().astype(int)
        return [self.items[i][1] for i in picks]


def thumbnail(
    image: np.ndarray, detections: Sequence[Detection], colours: Mapping[str, tuple[int, int, int]], width: int, caption: str
) -> np.ndarray:
    """A frame scaled to ``width`` with its boxes and a caption drawn on it."""
    height = max(1, round(image.shape[0] * width / image.shape[1]))
    small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    for detection in detections:
        x0, y0, x1, y1 = detection.box
        colour = colours.get(detection.label, PALETTE[-1])
        cv2.rectangle(small, (round(x0 * width), round(y0 * height)), (round(x1 * width), round(y1 * height)), colour, 2)
    cv2.rectangle(small, (0, 0), (width, 18), (0, 0, 0), -1)
    cv2.putText(small, caption, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return small


def contact_sheet(tiles: Sequence[np.ndarray], path: Path, columns: int = 4) -> Path:
    """Tiles in a grid, written as a JPEG."""
    if not tiles:
        raise ValueError("a contact sheet needs at least one frame")
    tile_h = max(tile.shape[0] for tile in tiles)
    tile_w = max(tile.shape[1] for tile in tiles)
    columns = min(columns, len(tiles))
    rows = math.ceil(len(tiles) / columns)
    gap = 4
    sheet = np.full((rows * (tile_h + gap) + gap, columns * (tile_w + gap) + gap, 3), 24, np.uint8)
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        y, x = gap + row * (tile_h + gap), gap + column * (tile_w + gap)
        sheet[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    cv2.imwrite(str(path), sheet, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return path


def timeline(times: Sequence[float], counts: Mapping[str, Sequence[int]], path: Path, size: tuple[int, int] = (960, 320)) -> Path:
    """Counts per label over time, as a PNG line chart."""
    width, height = size
    left, right, top, bottom = 56, 150, 20, 40
    chart = np.full((height, width, 3), 255, np.uint8)
    plot_w, plot_h = width - left - right, height - top - bottom
    t_max = max(times) if times and max(times) > 0 else 1.0
    c_max = max([max(values) for values in counts.values() if len(values)] + [1])
    cv2.rectangle(chart, (left, top), (left + plot_w, top + plot_h), (200, 200, 200), 1)
    for tick in range(c_max + 1) if c_max <= 10 else range(0, c_max + 1, math.ceil(c_max / 10)):
        y = top + plot_h - round(tick / c_max * plot_h)
        cv2.line(chart, (left - 4, y), (left, y), (90, 90, 90), 1)
        cv2.putText(chart, str(tick), (left - 30, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = left + round(fraction * plot_w)
        cv2.line(chart, (x, top + plot_h), (x, top + plot_h + 4), (90, 90, 90), 1)
        cv2.putText(
            chart, f"{fraction * t_max:.1f}s", (x - 14, top + plot_h + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (60, 60, 60), 1, cv2.LINE_AA
        )
    cv2.putText(
        chart, "count per sampled frame over time", (left, height - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (60, 60, 60), 1, cv2.LINE_AA
    )
    colours = label_colours(list(counts))
    for row, (label, values) in enumerate(sorted(counts.items())):
        colour = colours[label]
        points = np.array(
            [(left + round(t / t_max * plot_w), top + plot_h - round(v / c_max * plot_h)) for t, v in zip(times, values, strict=True)],
            np.int32,
        )
        if len(points) > 1:
            cv2.polylines(chart, [points], False, colour, 2, cv2.LINE_AA)
        for point in points:
            cv2.circle(chart, tuple(int(v) for v in point), 3, colour, -1, cv2.LINE_AA)
        legend_y = top + 14 + row * 20
        cv2.line(chart, (width - right + 12, legend_y - 4), (width - right + 36, legend_y - 4), colour, 3)
        cv2.putText(chart, label, (width - right + 42, legend_y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (30, 30, 30), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), chart)
    return path
