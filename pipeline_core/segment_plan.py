"""Splitting a long video into segments, pure: the plan, the names, the fan-in arithmetic.

A segment is a ``[start_frame, end_frame)`` range of the whole video's frame timeline. Sampling is
aligned to that timeline (a frame is sampled when ``index % sample_step == 0``, whatever the segment),
so the segments' sampled frames are exactly the single pass's, each once, wherever the boundaries
fall. The last segment is open-ended (``end_frame`` None: read to the end of the file) because a
container's frame count is a header field and may be approximate.

The job item records a plan's parameters (``records.plan_item``: a bounded amount, whatever the segment count) and
each segment's state is an item of its own; ``worker.splitter`` does the I/O around a split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

DEFAULT_SEGMENT_SECONDS = 60.0  # the module's default; terraform/variables.tf mirrors it
MIN_SEGMENT_SECONDS = 5.0  # shorter segments cost more in downloads and claims than they gain
MARGIN_FRACTION = 0.25  # a remainder shorter than this share of a segment joins the segment before it
# Segments are items of their own and the job item holds only the plan's parameters, so the count no longer
# has to fit in one item: this bound only keeps one merge's reads (100 segments per BatchGetItem) and one split's
# sends finite. At the default 60-s segments it is a week of video; parallelism follows the video's length.
MAX_SEGMENTS = 10_000


@dataclass(frozen=True)
class VideoTimeline:
    """What planning needs to know about a video: its frame rate, frame count and sampling step."""

    fps: float
    frame_count: int  # from the header: may be approximate, so the last segment reads to the end
    sample_step: int  # every sample_step-th frame of the whole video is sampled
    limit_frame: int | None = None  # nothing at or past this frame is sampled (a max_frames cap), or None


@dataclass(frozen=True)
class Segment:
    """One ``[start_frame, end_frame)`` range of a video; ``end_frame`` None reads to the end of the file."""

    index: int
    count: int
    start_frame: int
    end_frame: int | None
    start_seconds: float
    end_seconds: float  # the planned end (the header's duration for the open last segment)

    @property
    def label(self) -> str:
        """``segment 7/40 [420 s, 480 s)``: how failures and logs name it (1-based, as users count)."""
        return f"segment {self.index + 1}/{self.count} [{_seconds(self.start_seconds)} s, {_seconds(self.end_seconds)} s)"

    def contains(self, frame: int) -> bool:
        return frame >= self.start_frame and (self.end_frame is None or frame < self.end_frame)


def _seconds(value: float) -> str:
    return f"{value:.0f}" if abs(value - round(value)) < 0.05 else f"{value:.1f}"


@dataclass(frozen=True)
class SegmentPlan:
    """A video's split: its timeline and the segment length; the segments follow from them (``plan_segments``).

    The job item records these parameters (``records.plan_item``), never the segments, so its size does not grow
    with the segment count; every reader recomputes the same segments from them. Values are rounded as DynamoDB
    stores them (``dynamo.table.to_dynamo``) before planning, so the splitter and every later reader plan from the
    same numbers.
    """

    timeline: VideoTimeline
    segment_seconds: float
    segments: list[Segment] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        timeline = VideoTimeline(
            round(float(self.timeline.fps), 6), int(self.timeline.frame_count), int(self.timeline.sample_step), self.timeline.limit_frame
        )
        object.__setattr__(self, "timeline", timeline)
        object.__setattr__(self, "segment_seconds", round(float(self.segment_seconds), 6))
        object.__setattr__(self, "segments", plan_segments(timeline, self.segment_seconds))

    @property
    def count(self) -> int:
        return len(self.segments)


def plan_segments(timeline: VideoTimeline, segment_seconds: float) -> list[Segment]:
    """The segments of a video, or [] when it should run in one piece.

    Boundaries fall every ``segment_seconds`` of the video; a remainder shorter than
    ``MARGIN_FRACTION`` of a segment joins the one before (so a 61-s clip with 60-s segments is one
    piece), and more than ``MAX_SEGMENTS`` pieces are made longer instead.
    """
    if segment_seconds <= 0 or timeline.fps <= 0 or timeline.frame_count <= 0:
        return []
    frames = timeline.frame_count if timeline.limit_frame is None else min(timeline.frame_count, timeline.limit_frame)
    per_segment = segment_seconds * timeline.fps  # frames, fractional: boundaries stay on the seconds grid
    pieces = frames / per_segment
    count = math.floor(pieces)
    if pieces - count >= MARGIN_FRACTION:
        count += 1
    if count > MAX_SEGMENTS:
        per_segment = frames / MAX_SEGMENTS
        count = MAX_SEGMENTS
    if count <= 1:
        return []
    starts = [round(index * per_segment) for index in range(count)]
    open_end = timeline.limit_frame is None or timeline.limit_frame >= timeline.frame_count
    segments = []
    for index, start in enumerate(starts):
        last = index == count - 1
        end = None if last and open_end else (frames if last else starts[index + 1])
        segments.append(
            Segment(
                index=index,
                count=count,
                start_frame=start,
                end_frame=end,
                start_seconds=start / timeline.fps,
                end_seconds=(frames if last else starts[index + 1]) / timeline.fps,
            )
        )
    return segments


def sampled_frames(segment_start: int, segment_end: int, sample_step: int) -> range:
    """The whole-video-aligned sampled frame indices inside ``[segment_start, segment_end)``."""
    first = -(-segment_start // sample_step) * sample_step
    return range(first, segment_end, sample_step)
