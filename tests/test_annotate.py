"""Annotated media (worker/annotate.py): H.264 a browser plays, boxes held between samples, segments joined without re-encoding."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from pipeline_core.segment_plan import Segment
from tools.sample_media import image, long_video
from worker.annotate import ANNOTATED_IMAGE, ANNOTATED_VIDEO, annotate_video, concat_videos, label_colours, wrap
from worker.config import ConfigError, WorkerConfig
from worker.processing import SegmentPart, StepContext, StepOutput, can_split
from worker.registry import load_processor

pytestmark = pytest.mark.unit

FPS, STEP = 10.0, 5
LEFT, RIGHT = [0.05, 0.3, 0.45, 0.9], [0.55, 0.3, 0.95, 0.9]


def sampled(frames: int) -> list[dict[str, Any]]:
    """Every STEP-th frame sampled; the person is on the left in even samples and on the right in odd ones."""
    return [
        {
            "index": i,
            "timestamp": i / FPS,
            "detections": [{"label": "person", "score": 0.9, "box": LEFT if (i // STEP) % 2 == 0 else RIGHT}],
        }
        for i in range(0, frames, STEP)
    ]


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


def green(image: np.ndarray) -> np.ndarray:
    """Where the person colour (BGR 40, 200, 40) is drawn: the box and its label tag."""
    b, g, r = (image[..., c].astype(int) for c in range(3))
    return (g > 150) & (r < 110) & (b < 110)


def side_of_box(image: np.ndarray) -> str:
    mask = green(image)
    half = image.shape[1] // 2
    left, right = int(mask[:, :half].sum()), int(mask[:, half:].sum())
    assert max(left, right) > 50, "no box drawn"
    return "left" if left > right else "right"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return long_video(tmp_path_factory.mktemp("clip") / "clip.avi", seconds=3, fps=FPS, size=(320, 240))


def test_video_is_h264_yuv420p_with_every_frame_and_boxes_held_until_the_next_sample(clip: Path, tmp_path: Path) -> None:
    target = tmp_path / ANNOTATED_VIDEO
    stats = annotate_video(clip, sampled(30), FPS, label_colours(["person"]), target, step=STEP)
    with av.open(str(target)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert float(stream.average_rate) == pytest.approx(FPS)
        head = target.read_bytes()[:4096]
        assert head.find(b"moov") < head.find(b"mdat") or b"mdat" not in head  # faststart: the index comes first
    frames = decoded(target)
    assert stats["frames"] == len(frames) == 30
    assert stats["bytes"] == target.stat().st_size
    # Sample 0 (left) holds through frame 4, sample 5 (right) from frame 5 to 9, and so on.
    assert [side_of_box(frames[i]) for i in (0, 4, 5, 9, 10, 29)] == ["left", "left", "right", "right", "left", "right"]


def test_a_segment_encodes_its_range_and_the_join_copies_packets_without_reencoding(clip: Path, tmp_path: Path) -> None:
    frames, colours = sampled(30), label_colours(["person"])
    first, second = tmp_path / "0.mp4", tmp_path / "1.mp4"
    annotate_video(clip, [f for f in frames if f["index"] < 15], FPS, colours, first, start=0, end=15, step=STEP)
    annotate_video(clip, [f for f in frames if f["index"] >= 15], FPS, colours, second, start=15, end=None, step=STEP)
    joined = tmp_path / "joined.mp4"
    assert concat_videos([first, second], joined) == 30

    def payloads(path: Path) -> list[bytes]:
        with av.open(str(path)) as container:
            return [bytes(packet) for packet in container.demux(video=0) if packet.dts is not None]

    assert payloads(joined) == payloads(first) + payloads(second)  # the very packets: nothing re-encoded
    with av.open(str(joined)) as container:
        stream = container.streams.video[0]
        assert float(stream.duration * stream.time_base) == pytest.approx(3.0, abs=0.11)
        keys = [i for i, packet in enumerate(p for p in container.demux(video=0) if p.dts is not None) if packet.is_keyframe]
        assert 15 in keys  # the second segment starts on its own key frame
    video = decoded(joined)
    assert len(video) == 30
    assert side_of_box(video[15]) == "right" and side_of_box(video[14]) == "left" and side_of_box(video[20]) == "left"


class FakeDetect:
    """A processor that writes what ``detect`` writes, with fixed detections, and can split and merge."""

    name, version = "fake-detect", "1"

    def __init__(self, options: Any = None) -> None:
        self.merged: list[SegmentPart] = []

    def process(self, path: Path, context: StepContext) -> StepOutput:
        kind = "image" if path.suffix == ".png" else "video"
        frames = sampled(30) if kind == "video" else [{"index": 0, "timestamp": 0.0, "detections": sampled(1)[0]["detections"]}]
        if context.segment is not None:
            frames = [f for f in frames if context.segment.contains(f["index"])]
        media = {"kind": kind, "fps": FPS if kind == "video" else None}
        return StepOutput({"media": media, "sampling": {"step": STEP}, "models": [{"labels": ["person"]}], "frames": frames, "timings": {}})

    def timeline(self, path: Path) -> None:
        return None

    def merge(self, parts: list[SegmentPart], context: StepContext) -> StepOutput:
        self.merged = parts
        return StepOutput({"frames": [f for p in parts for f in p.result["output"]["frames"]], "timings": {}})


def context(tmp_path: Path, segment: Segment | None = None) -> StepContext:
    workdir = tmp_path / ("whole" if segment is None else f"segment-{segment.index}")
    workdir.mkdir()
    return StepContext("job", "detect", "bucket", "key", "v", 1, workdir, segment)


def test_wrapped_processor_adds_the_annotated_video_to_its_output_and_keeps_splitting(clip: Path, tmp_path: Path) -> None:
    processor = wrap(FakeDetect())
    assert can_split(processor) and processor.name == "fake-detect"
    output = processor.process(clip, context(tmp_path))
    assert output.document["pictures"]["annotated"] == ANNOTATED_VIDEO
    assert output.document["annotation"]["frames"] == 30 and output.document["timings"]["annotate"] > 0
    assert len(decoded(output.files[ANNOTATED_VIDEO])) == 30


def test_merge_joins_the_segments_videos(clip: Path, tmp_path: Path) -> None:
    processor = wrap(FakeDetect())
    segments = [Segment(0, 2, 0, 15, 0.0, 1.5), Segment(1, 2, 15, None, 1.5, 3.0)]
    parts = []
    for segment in segments:
        output = processor.process(clip, context(tmp_path, segment))
        parts.append(SegmentPart(segment, {"output": json.loads(json.dumps(output.document))}, output.files))
    merged = processor.merge(list(reversed(parts)), context(tmp_path))  # in any order
    assert merged.document["pictures"]["annotated"] == ANNOTATED_VIDEO
    assert merged.document["annotation"]["frames"] == 30
    assert len(decoded(merged.files[ANNOTATED_VIDEO])) == 30


def test_merge_without_every_segments_video_keeps_the_detections_and_says_why(clip: Path, tmp_path: Path) -> None:
    processor = wrap(FakeDetect())
    segment = Segment(0, 2, 0, 15, 0.0, 1.5)
    part = SegmentPart(segment, {"output": {"frames": sampled(15)}}, {})
    merged = processor.merge([part], context(tmp_path))
    assert ANNOTATED_VIDEO not in merged.files and len(merged.document["frames"]) == 3
    assert merged.document["annotation"]["error"] == "no annotated.mp4 from segment 1/2 [0 s, 1.5 s): annotate was off when it ran"


def test_image_gets_an_annotated_jpeg(tmp_path: Path) -> None:
    photo = image(tmp_path / "photo.png")
    output = wrap(FakeDetect()).process(photo, context(tmp_path))
    assert output.document["pictures"]["annotated"] == ANNOTATED_IMAGE
    assert output.files[ANNOTATED_IMAGE].read_bytes()[:3] == b"\xff\xd8\xff"


def test_annotation_that_fails_keeps_the_detections_and_records_the_reason(tmp_path: Path) -> None:
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"RIFF\0\0\0\0AVI not really a video")
    output = wrap(FakeDetect()).process(broken, context(tmp_path))
    assert ANNOTATED_VIDEO not in output.files and len(output.document["frames"]) == 6
    assert output.document["annotation"]["error"]


def test_documents_without_frames_pass_through(tmp_path: Path) -> None:
    photo = image(tmp_path / "photo.png")
    output = load_processor("media-info", {}, annotate=True).process(photo, context(tmp_path))
    assert output.files == {} and "annotation" not in output.document


def test_annotate_setting() -> None:
    base = {"QUEUE_URL": "q", "JOBS_TABLE": "t", "STEP_NAME": "s", "RESULTS_BUCKET": "b"}
    assert WorkerConfig.from_env(base).annotate is False
    assert WorkerConfig.from_env({**base, "ANNOTATE": "true"}).annotate is True
    with pytest.raises(ConfigError, match="ANNOTATE must be true or false"):
        WorkerConfig.from_env({**base, "ANNOTATE": "yes please"})
