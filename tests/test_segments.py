"""Long videos in segments: the plan, and a merged result equal to one pass over the same video."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from pipeline_core.jobs import WorkMessage
from pipeline_core.segment_plan import MAX_SEGMENTS, VideoTimeline, plan_segments, sampled_frames
from tools.sample_media import long_video
from worker.detection.engine import DetectionProcessor
from worker.processing import SegmentPart, StepContext

pytestmark = pytest.mark.unit

SQUARE = {"name": "tests.support.plugins:SquareDetector"}


# --- the plan ------------------------------------------------------------------------------------------------


def test_a_clip_just_over_one_segment_is_not_split() -> None:
    assert plan_segments(VideoTimeline(fps=30, frame_count=61 * 30, sample_step=30), 60) == []
    assert plan_segments(VideoTimeline(fps=30, frame_count=74 * 30, sample_step=30), 60) == []


def test_a_short_remainder_joins_the_last_segment_and_the_last_is_open_ended() -> None:
    segments = plan_segments(VideoTimeline(fps=25, frame_count=130 * 25, sample_step=25), 60)
    assert [(s.start_frame, s.end_frame) for s in segments] == [(0, 1500), (1500, None)]
    assert [s.label for s in segments] == ["segment 1/2 [0 s, 60 s)", "segment 2/2 [60 s, 130 s)"]


def test_segments_tile_the_timeline_on_the_seconds_grid_for_a_fractional_frame_rate() -> None:
    timeline = VideoTimeline(fps=29.97, frame_count=round(29.97 * 3600), sample_step=30)
    segments = plan_segments(timeline, 60)
    assert len(segments) == 60
    assert [s.start_frame for s in segments] == [round(i * 60 * 29.97) for i in range(60)]
    assert all(a.end_frame == b.start_frame for a, b in itertools.pairwise(segments))
    assert segments[6].label == "segment 7/60 [360 s, 420 s)"


def test_parallelism_follows_the_videos_length() -> None:
    """A 24-hour recording gets its 60-s segments (1,440 of them), not 7-minute ones (MAX_SEGMENTS was 200 to keep the
    job item small; segments are items of their own now). Past MAX_SEGMENTS (a week) segments get longer."""
    day = plan_segments(VideoTimeline(fps=30, frame_count=30 * 3600 * 24, sample_step=30), 60)
    assert len(day) == 1440 and day[1].start_frame == 30 * 60
    segments = plan_segments(VideoTimeline(fps=30, frame_count=30 * 3600 * 24 * 8, sample_step=30), 60)
    assert len(segments) == MAX_SEGMENTS
    assert segments[1].start_frame == round(30 * 3600 * 24 * 8 / MAX_SEGMENTS)


@pytest.mark.parametrize(
    ("frames", "fps", "step", "seconds"), [(1234, 10, 14, 10), (9001, 29.97, 7, 60), (5000, 25, 1, 30), (700, 7, 9, 11)]
)
def test_the_segments_sample_every_frame_one_pass_samples_once(frames: int, fps: float, step: int, seconds: float) -> None:
    segments = plan_segments(VideoTimeline(fps=fps, frame_count=frames, sample_step=step), seconds)
    assert len(segments) >= 2
    union = [i for s in segments for i in sampled_frames(s.start_frame, s.end_frame or frames, step)]
    assert union == list(range(0, frames, step))


def test_a_max_frames_cap_ends_the_plan_where_one_pass_stops() -> None:
    segments = plan_segments(VideoTimeline(fps=10, frame_count=6000, sample_step=10, limit_frame=2991), 60)
    assert segments[-1].end_frame == 2991
    assert [s.start_frame for s in segments] == [0, 600, 1200, 1800, 2400]


def test_step_messages_without_a_segment_read_and_write_as_before() -> None:
    plain = WorkMessage("0" * 32, "detect", "b", "k", "v")
    assert "segment" not in plain.to_body()
    segment = plain.for_segment(7)
    assert '"segment": 7' in segment.to_body()
    with pytest.raises(ValueError, match="segment must be a non-negative integer"):
        body = {"kind": "gpu-pipeline.step", "job_id": "0" * 32, "step": "s", "bucket": "b", "key": "k", "version": "v"}
        WorkMessage.from_dict(body | {"segment": -1})


# --- merged == one pass ------------------------------------------------------------------------------------------


def one_pass_and_merged(path: Path, options: dict, segment_seconds: float, tmp_path: Path) -> tuple[dict, dict, int]:
    processor = DetectionProcessor({"detectors": [SQUARE], "contact_sheet_frames": 6, **options})
    whole_dir = tmp_path / "whole"
    whole_dir.mkdir()
    whole = processor.process(path, StepContext("j", "detect", "b", "k", "v", 1, whole_dir)).document
    segments = plan_segments(processor.timeline(path), segment_seconds)
    parts = []
    for segment in segments:
        workdir = tmp_path / f"segment-{segment.index}"
        workdir.mkdir()
        output = processor.process(path, StepContext("j", "detect", "b", "k", "v", 1, workdir, segment=segment))
        parts.append(SegmentPart(segment, {"output": output.document}, output.files))
    merge_dir = tmp_path / "merge"
    merge_dir.mkdir()
    merged = processor.merge(parts, StepContext("j", "detect", "b", "k", "v", 1, merge_dir))
    assert set(merged.files) == {"contact-sheet.jpg", "timeline.png"} and all(p.stat().st_size for p in merged.files.values())
    return whole, merged.document, len(segments)


def same_result(whole: dict, merged: dict) -> None:
    assert [(f["index"], f["timestamp"]) for f in merged["frames"]] == [(f["index"], f["timestamp"]) for f in whole["frames"]]
    assert merged["frames"] == whole["frames"]
    assert merged["summary"] == whole["summary"]
    assert merged["media"] == whole["media"]
    assert merged["sampling"] == whole["sampling"]
    assert merged["models"] == whole["models"]


@pytest.mark.parametrize(
    ("suffix", "seconds", "fps", "options", "segment_seconds"),
    [
        (".avi", 47.3, 10, {"sample_fps": 0.7}, 10),  # 47.3 s is no multiple of 10 s; a 14-frame step does not divide 100
        (".avi", 33, 12, {"every_n_frames": 7}, 8),
        (".mp4", 41, 10, {"sample_fps": 3}, 10),  # MPEG-4 part 2: seeking lands on keyframes
        (".avi", 40, 10, {"sample_fps": 1, "max_frames": 23}, 10),  # one pass stops at max_frames: so does the plan
    ],
)
def test_the_merged_result_equals_one_pass(
    tmp_path: Path, suffix: str, seconds: float, fps: float, options: dict, segment_seconds: float
) -> None:
    path = tmp_path / f"video{suffix}"
    if suffix == ".mp4":
        import cv2

        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (160, 120))
        avi = long_video(tmp_path / "source.avi", seconds, fps)
        capture = cv2.VideoCapture(str(avi))
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            writer.write(frame)
        writer.release()
        capture.release()
    else:
        long_video(path, seconds, fps)
    whole, merged, count = one_pass_and_merged(path, options, segment_seconds, tmp_path)
    assert count >= 2
    assert any(frame["detections"] for frame in whole["frames"]) and not all(frame["detections"] for frame in whole["frames"])
    same_result(whole, merged)
