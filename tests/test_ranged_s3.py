"""A segment's range read from S3 (moto, through the fault proxy that counts what S3 sends) in ranged GETs: MP4, MOV,
MKV and AVI decode to the same frames as the downloaded file, for a fraction of its bytes; every GET reads the job's
version, so an overwrite mid-read fails as the whole-file download does."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from numpy.typing import NDArray

from pipeline_core.jobs import ObjectRef
from tests.support.aws import REGION
from tests.support.faultproxy import FaultProxy
from tools.sample_media import clip, image
from worker.detection.media import FrameReader, Sampling, media_kind, probe
from worker.errors import PermanentError
from worker.s3input import S3Input, first_read

pytestmark = pytest.mark.integration

FPS, SECONDS = 25, 24  # 600 frames, a keyframe every 50
RANGE = (290, 340)  # two seconds from the middle


def client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION)


@pytest.fixture
def bucket(moto_endpoint: str) -> str:
    name = f"ranged-{uuid.uuid4().hex[:8]}"
    client(moto_endpoint).create_bucket(Bucket=name)
    return name


def upload(s3: Any, bucket: str, key: str, body: bytes) -> ObjectRef:
    answer = s3.put_object(Bucket=bucket, Key=key, Body=body)
    if answer.get("VersionId") not in (None, "null"):
        return ObjectRef(bucket, key, answer["VersionId"], len(body), versioned=True)
    return ObjectRef(bucket, key, answer["ETag"].strip('"'), len(body))


def frames(source: Path | S3Input, span: tuple[int, int] | None = RANGE) -> list[tuple[int, NDArray[np.uint8]]]:
    reader = FrameReader(source, probe(source), Sampling(per_second=None, every_n_frames=1), max_frames=10_000, frames=span)
    return [(frame.index, frame.image) for frame in reader]


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv", ".avi"])
def test_a_middle_range_read_in_ranges_is_the_range_of_the_downloaded_file_for_a_fraction_of_its_bytes(
    suffix: str, proxy: FaultProxy, bucket: str, tmp_path: Path
) -> None:
    video = clip(tmp_path / f"clip{suffix}", seconds=SECONDS, fps=FPS, size=(320, 240), bit_rate=2_000_000)
    size = video.stat().st_size
    s3 = client(proxy.url)
    obj = upload(s3, bucket, f"in/clip{suffix}", video.read_bytes())
    before = proxy.bytes_out["S3.GET"], proxy.calls["S3.GET"]
    source = S3Input(s3, obj, max_bytes=size)
    ranged = frames(source)
    assert source.size == size and source.response["ContentLength"] == size and source.response["ETag"].strip('"') == obj.version
    expected = frames(video)  # today's path: the downloaded file
    assert [index for index, _ in ranged] == list(range(*RANGE)) == [index for index, _ in expected]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(ranged, expected, strict=True)), "the pixels differ"
    sent, calls = proxy.bytes_out["S3.GET"] - before[0], proxy.calls["S3.GET"] - before[1]
    assert (sent, calls) == (source.bytes_read, source.calls)  # what the reader counts is what S3 sent
    print(f"{suffix}: {sent} of {size} bytes ({sent / size:.2f}) in {calls} GETs")
    assert sent < 0.5 * size, f"read {sent} of {size} bytes for a twelfth of the video"
    assert calls <= 12


def test_the_whole_file_read_on_after_planning_costs_one_more_get_and_no_byte_twice(proxy: FaultProxy, bucket: str, tmp_path: Path) -> None:
    video = clip(tmp_path / "clip.mp4", seconds=8, fps=FPS, size=(320, 240), bit_rate=2_000_000)
    s3 = client(proxy.url)
    source = S3Input(s3, upload(s3, bucket, "in/clip.mp4", video.read_bytes()), max_bytes=10**9)
    probe(source)  # planning: the header, and the index at the end of the MP4
    calls = source.calls
    source.download(tmp_path / "whole.mp4")
    assert (tmp_path / "whole.mp4").read_bytes() == video.read_bytes()
    assert source.calls == calls + 1 == proxy.calls["S3.GET"]
    assert proxy.bytes_out["S3.GET"] == source.bytes_read < video.stat().st_size + 2 * source.min_block


def test_an_object_overwritten_mid_read_fails_permanently_when_the_bucket_is_unversioned(
    moto_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    video = clip(tmp_path / "clip.mp4", seconds=SECONDS, fps=FPS, size=(320, 240), bit_rate=2_000_000)
    s3 = client(moto_endpoint)
    obj = upload(s3, bucket, "in/clip.mp4", video.read_bytes())
    source = S3Input(s3, obj, max_bytes=10**9)
    info = probe(source)
    s3.put_object(Bucket=bucket, Key=obj.key, Body=b"a new upload, with a job of its own")
    reader = FrameReader(source, info, Sampling(per_second=None, every_n_frames=1), max_frames=10_000, frames=RANGE)
    with pytest.raises(PermanentError, match="was overwritten after this job was made"):
        list(reader)


def test_every_get_reads_the_jobs_version_when_the_bucket_is_versioned(moto_endpoint: str, bucket: str, tmp_path: Path) -> None:
    video = clip(tmp_path / "clip.mkv", seconds=SECONDS, fps=FPS, size=(320, 240), bit_rate=2_000_000)
    s3 = client(moto_endpoint)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    obj = upload(s3, bucket, "in/clip.mkv", video.read_bytes())
    assert obj.versioned
    source = S3Input(s3, obj, max_bytes=10**9)
    info = probe(source)
    s3.put_object(
        Bucket=bucket,
        Key=obj.key,
        Body=clip(tmp_path / "other.mkv", seconds=SECONDS, fps=FPS, size=(320, 240), bit_rate=500_000).read_bytes(),
    )
    reader = FrameReader(source, info, Sampling(per_second=None, every_n_frames=1), max_frames=10_000, frames=RANGE)
    ranged = [(frame.index, frame.image) for frame in reader]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(ranged, frames(video), strict=True))
    s3.delete_object(Bucket=bucket, Key=obj.key, VersionId=obj.version)
    with pytest.raises(PermanentError, match="no longer exists"):
        S3Input(s3, obj, max_bytes=10**9)


def test_an_empty_object_and_one_over_the_limit(moto_endpoint: str, bucket: str) -> None:
    s3 = client(moto_endpoint)
    empty = S3Input(s3, upload(s3, bucket, "in/empty.mp4", b""), max_bytes=100)
    assert empty.size == 0 and empty.response["ContentLength"] == 0
    with pytest.raises(PermanentError, match="empty file"):
        probe(empty)
    with pytest.raises(PermanentError, match="over the limit of 100"):
        S3Input(s3, upload(s3, bucket, "in/big.mp4", b"x" * 101), max_bytes=100)


def test_a_small_file_planned_first_is_read_whole_in_one_get(proxy: FaultProxy, bucket: str, tmp_path: Path) -> None:
    photo = image(tmp_path / "photo.jpg")
    s3 = client(proxy.url)
    obj = upload(s3, bucket, "in/photo.jpg", photo.read_bytes())
    source = S3Input(s3, obj, max_bytes=10**9, first_block=first_read(obj.key, obj.size, segment=False))
    assert media_kind(source) == ("image", "jpeg")  # planning: not a video, runs in one piece
    source.download(tmp_path / "input.jpg")
    assert (tmp_path / "input.jpg").read_bytes() == photo.read_bytes()
    assert proxy.calls["S3.GET"] == 1 and proxy.bytes_out["S3.GET"] == photo.stat().st_size


def test_a_segments_s3_input_is_freed_when_its_step_drops_it(moto_endpoint: str, bucket: str, tmp_path: Path) -> None:
    """The input's cached windows (up to ``CACHE_BYTES`` each, ``CONCURRENCY`` at a time) go when the step lets go of
    it, not at the worker's next full garbage collection (off here: only reference counting frees it)."""
    import gc
    import weakref

    video = clip(tmp_path / "clip.mp4", seconds=SECONDS, fps=FPS, size=(160, 120), bit_rate=400_000)
    s3 = client(moto_endpoint)
    source = S3Input(s3, upload(s3, bucket, "in/clip.mp4", video.read_bytes()), max_bytes=10**9, first_block=first_read("k", 0, True))
    gone = weakref.ref(source)
    enabled = gc.isenabled()
    gc.disable()
    try:
        assert len(frames(source)) == RANGE[1] - RANGE[0] and source.calls > 1
        del source
        assert gone() is None, "the input (and its cached windows) outlived every reference to it"
    finally:
        if enabled:
            gc.enable()


def test_a_segment_that_fails_mid_read_holds_none_of_its_inputs_bytes_once_its_step_has_ended(
    proxy: FaultProxy, bucket: str, tmp_path: Path
) -> None:
    """A failed read's error is kept on the input, and its traceback holds the frames that read it: a cycle that kept
    the input's cached windows (up to ``CACHE_BYTES`` a segment) until a full garbage collection. The step drops them
    when it ends, however it ends (garbage collection off here)."""
    import gc
    import threading

    from botocore.config import Config
    from botocore.exceptions import ClientError

    from pipeline_core.bodies import WorkItem
    from pipeline_core.jobstore import Claim
    from pipeline_core.segment_plan import Segment
    from worker.config import WorkerConfig
    from worker.lifecycle import StepRunner
    from worker.logs import Stopwatch
    from worker.registry import load_processor

    video = clip(tmp_path / "clip.mp4", seconds=SECONDS, fps=FPS, size=(320, 240), bit_rate=2_000_000)
    s3 = boto3.client("s3", endpoint_url=proxy.url, region_name=REGION, config=Config(retries={"total_max_attempts": 1}))
    obj = upload(s3, bucket, "in/clip.mp4", video.read_bytes())
    env = {"QUEUE_URL": "q", "JOBS_TABLE": "t", "STEP_NAME": "detect", "RESULTS_BUCKET": bucket, "SEGMENT_SECONDS": "5"}
    processor = load_processor("detect", {"detectors": [{"name": "tests.support.plugins:SquareDetector"}], "sample_fps": 5})
    runner = StepRunner(WorkerConfig.from_env(env), s3=s3, store=None, processor=processor, stop=threading.Event(), sqs=object())  # type: ignore[arg-type]
    assert runner.splitter.reads_ranges
    span = Segment(5, 12, RANGE[0], RANGE[1], RANGE[0] / FPS, RANGE[1] / FPS)
    claim = Claim("j", "detect", "w", 1, ("detect",), segment=5, span=span)
    item = WorkItem(obj, "j", "detect", from_s3_event=False, segment=5)
    proxy.add("S3.GET", path_contains=f"/{bucket}/{obj.key}", after=3, error=(503, "SlowDown", "Please reduce your request rate."))
    enabled = gc.isenabled()
    gc.disable()
    try:
        before = {id(o) for o in gc.get_objects() if isinstance(o, S3Input)}
        with pytest.raises(ClientError, match="SlowDown"):
            runner._download_and_process(claim, item, tmp_path, Stopwatch())
        inputs = [o for o in gc.get_objects() if isinstance(o, S3Input) and id(o) not in before]
        assert inputs and inputs[0].calls >= 3, "the segment's input read before it failed"
        assert sum(o._cached for o in inputs) == 0, "the failed segment's input still holds its cached windows"
    finally:
        if enabled:
            gc.enable()


def decoded(path: Path) -> list[NDArray[np.uint8]]:
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_a_segments_annotation_reads_its_range_again_from_the_spill_file_not_s3_and_annotates_the_same_frames(
    suffix: str, proxy: FaultProxy, bucket: str, tmp_path: Path
) -> None:
    """A segment's frames, then its annotated video (a second decode of the same range), through S3 (the emulator, the
    proxy counting what it sends) with a memory cache smaller than the range: the second pass reads the spill file,
    and the annotated video is the one annotated from the downloaded file."""
    from worker.annotate import annotate_video

    video = clip(tmp_path / f"clip{suffix}", seconds=SECONDS, fps=FPS, size=(320, 240), bit_rate=2_000_000)
    s3 = client(proxy.url)
    obj = upload(s3, bucket, f"in/clip{suffix}", video.read_bytes())
    spill = tmp_path / "input.ranges"
    options = {"min_block": 16 * 1024, "max_block": 64 * 1024, "cache_bytes": 128 * 1024}
    source = S3Input(s3, obj, max_bytes=10**9, first_block=first_read(obj.key, 0, True), spill=spill, **options)
    try:
        assert [index for index, _ in frames(source)] == list(range(*RANGE))
        first_pass = proxy.bytes_out["S3.GET"]
        assert spill.exists(), "a range larger than the memory cache spilled nothing"
        on_disk = spill.stat().st_blocks * 512  # a sparse file: the windows spilled take disk, not the bytes before them
        assert on_disk <= source.bytes_read + 64 * 1024 < spill.stat().st_size, (on_disk, source.bytes_read, spill.stat().st_size)
        annotate_video(source, [], float(FPS), {}, tmp_path / "ranged.mp4", start=RANGE[0], end=RANGE[1])
        again = proxy.bytes_out["S3.GET"] - first_pass
        assert again <= 0.1 * first_pass, f"the second pass read {again} bytes from S3 again (the first {first_pass})"
        source.raise_failure()
    finally:
        source.close()
    assert not spill.exists()
    annotate_video(video, [], float(FPS), {}, tmp_path / "whole.mp4", start=RANGE[0], end=RANGE[1])
    ranged, whole = decoded(tmp_path / "ranged.mp4"), decoded(tmp_path / "whole.mp4")
    assert len(ranged) == RANGE[1] - RANGE[0] == len(whole)
    assert all(np.array_equal(a, b) for a, b in zip(ranged, whole, strict=True)), "the annotated frames differ"


def test_an_input_closed_while_a_decoder_still_reads_it_ends_that_read_without_an_error_or_a_crash(
    moto_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    """A step that ends (timed out, failed) closes its input while a decoder thread may still be reading through it:
    a read of the spill file then must neither raise (OpenCV crashes on an exception from a file object's read) nor
    read a closed or reused descriptor."""
    import threading

    video = clip(tmp_path / "clip.mp4", seconds=SECONDS, fps=FPS, size=(320, 240), bit_rate=2_000_000)
    s3 = client(moto_endpoint)
    obj = upload(s3, bucket, "in/clip.mp4", video.read_bytes())
    options = {"min_block": 16 * 1024, "max_block": 64 * 1024, "cache_bytes": 128 * 1024}
    source = S3Input(s3, obj, max_bytes=10**9, first_block=first_read(obj.key, 0, True), spill=tmp_path / "input.ranges", **options)
    assert len(frames(source, (0, 300))) == 300
    handle = source.open(for_decoder=True)
    data, errors = video.read_bytes(), []

    def read() -> None:
        try:
            while (position := handle.tell()) < len(data):
                piece = handle.read(20_000)
                if not piece:
                    return
                if piece != data[position : position + len(piece)]:
                    errors.append(f"wrong bytes at {position}")
                    return
        except BaseException as error:  # noqa: BLE001 - what OpenCV would have crashed on
            errors.append(repr(error))

    thread = threading.Thread(target=read)
    thread.start()
    source.close()
    thread.join(60)
    assert not thread.is_alive() and errors == [] and source.failure is None
