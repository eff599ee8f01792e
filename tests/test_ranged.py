"""The ranged reader's file object over a fake fetcher: seek/read, read-ahead, the shared cache, failures; and
OpenCV decoding through it (the same frames as from the file, a failed read raised as itself)."""

from __future__ import annotations

import io
import itertools
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from tools.sample_media import clip
from worker.detection.media import FrameReader, Sampling, probe
from worker.errors import PermanentError, TransientError
from worker.ranged import FIRST_BLOCK, RangedInput
from worker.s3input import WHOLE, WHOLE_BELOW, first_read, total_size

pytestmark = pytest.mark.unit

KIB = 1024


class Fake:
    """An object in memory; records every fetch (start, end)."""

    def __init__(self, data: bytes, fail: tuple[int, int] | None = None, error: BaseException | None = None, short: bool = False):
        self.data, self.fail, self.error, self.short = data, fail, error, short
        self.fetches: list[tuple[int, int]] = []

    def __call__(self, start: int, end: int) -> bytes:
        if self.fail is not None and start < self.fail[1] and end > self.fail[0]:
            raise self.error or TransientError("connection reset")
        self.fetches.append((start, end))
        return self.data[start : end - 1] if self.short else self.data[start:end]


def source(data: bytes, **options: Any) -> tuple[RangedInput, Fake]:
    fake = Fake(data)
    defaults = {"min_block": 4 * KIB, "max_block": 32 * KIB, "cache_bytes": 128 * KIB} | options
    return RangedInput(fake, len(data), "x.bin", **defaults), fake


DATA = random.Random(1).randbytes(300 * KIB + 17)


def test_any_sequence_of_seeks_and_reads_returns_the_bytes_a_file_would() -> None:
    ranged, _ = source(DATA)
    handle, reference = ranged.open(), io.BytesIO(DATA)
    draw = random.Random(2)
    for _ in range(400):
        whence = draw.choice([io.SEEK_SET, io.SEEK_CUR, io.SEEK_END])
        offset = {
            io.SEEK_SET: draw.randrange(len(DATA) + 10),
            io.SEEK_CUR: draw.randrange(-5000, 5000),
            io.SEEK_END: -draw.randrange(len(DATA)),
        }[whence]
        if reference.tell() + offset < 0 and whence == io.SEEK_CUR:
            offset = -reference.tell()
        assert handle.seek(offset, whence) == reference.seek(offset, whence)
        size = draw.choice([0, 1, 7, 4096, 40_000, 100_000, -1])
        assert handle.read(size) == reference.read(size)
        assert handle.tell() == reference.tell()
    buffer = bytearray(1000)
    handle.seek(12345)
    assert handle.readinto(buffer) == 1000 and bytes(buffer) == DATA[12345:13345]
    assert handle.seekable() and handle.readable() and not handle.writable()


def test_read_ahead_doubles_while_reading_on_and_starts_small_again_after_a_seek() -> None:
    ranged, fake = source(DATA)
    handle = ranged.open()
    while handle.read(1000):
        pass
    sizes = [end - start for start, end in fake.fetches]
    assert sizes[:4] == [4 * KIB, 8 * KIB, 16 * KIB, 32 * KIB]
    assert max(sizes) == 32 * KIB and sum(sizes) == len(DATA)
    fake.fetches.clear()
    ranged.cache_bytes = 0  # nothing kept: the next read fetches
    handle.seek(100 * KIB + 1)
    handle.read(10)
    assert [end - start for start, end in fake.fetches] == [4 * KIB]
    assert (ranged.calls, ranged.bytes_read) == (len(sizes) + 1, len(DATA) + 4 * KIB)


def test_a_read_larger_than_the_block_is_one_fetch_of_exactly_what_it_needs() -> None:
    ranged, fake = source(DATA)
    assert ranged.open().read(100 * KIB) == DATA[: 100 * KIB]
    assert fake.fetches == [(0, 100 * KIB)]


def test_every_file_object_of_an_input_shares_its_cache() -> None:
    ranged, fake = source(DATA)
    first = ranged.open()
    first.seek(50 * KIB)
    first.read(3 * KIB)
    fetched = list(fake.fetches)
    second = ranged.open()
    second.seek(50 * KIB + 100)
    assert second.read(2 * KIB) == DATA[50 * KIB + 100 : 52 * KIB + 100]
    assert fake.fetches == fetched


def test_the_cache_stays_within_its_bound_dropping_the_least_recently_used() -> None:
    ranged, fake = source(DATA, cache_bytes=80 * KIB)  # two windows of the largest size, and more
    handle = ranged.open()
    handle.read(4 * KIB)  # the header: [0, 4 KiB)
    handle.seek(200 * KIB)
    handle.read(4 * KIB)  # an index: [200 KiB, 204 KiB)
    handle.seek(4 * KIB)
    while handle.tell() < 100 * KIB:
        handle.read(8000)
        assert ranged.cached(200 * KIB) is not None  # in use, kept
        assert ranged._cached <= 80 * KIB
    assert ranged.cached(0) is None  # not used since: dropped
    fetched = len(fake.fetches)
    handle.seek(0)
    assert handle.read(10) == DATA[:10] and len(fake.fetches) == fetched + 1


def test_with_a_spill_file_a_second_pass_over_a_range_larger_than_the_memory_cache_fetches_nothing(tmp_path: Path) -> None:
    """A segment's annotation decodes its range again after the detector did: the windows memory dropped meanwhile
    come from the spill file on the task's disk, not from S3 again (bytes read <= 1.3 x the file)."""
    spill = tmp_path / "input.ranges"
    ranged, fake = source(DATA, cache_bytes=40 * KIB, spill=spill)  # a range of 250 KiB against 40 KiB of memory
    first = ranged.open()
    first.seek(50 * KIB)
    assert first.read(250 * KIB) == DATA[50 * KIB : 300 * KIB]
    fetched = list(fake.fetches)
    second = ranged.open()
    second.seek(50 * KIB)
    while (position := second.tell()) < 300 * KIB:
        size = min(3000, 300 * KIB - position)
        assert second.read(size) == DATA[position : position + size]
    assert fake.fetches == fetched, "a byte was fetched twice"
    assert ranged.bytes_read == sum(end - start for start, end in fetched)
    ranged.close()
    assert not spill.exists()


def test_a_second_pass_in_a_decoders_small_reads_reads_from_the_spill_file_what_it_asks_for_not_a_block_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenCV reads a file object in pieces of a few KiB to a few tens (23 KiB for a 2 Mbit/s MP4): a spilled read
    that took ``max_block`` (8 MiB in a worker) from the spill file for each piece and kept only the piece read
    ~176 x the range from disk on the annotation's pass (880 MB for a 5 MB video), and allocated 8 MiB per read."""
    import os

    ranged, fake = source(DATA, cache_bytes=40 * KIB, spill=tmp_path / "input.ranges")
    handle = ranged.open()
    while (position := handle.tell()) < 300 * KIB:  # the frame reader's pass: windows of up to 32 KiB
        assert handle.read(5000) == DATA[position : position + 5000]
    fetched = len(fake.fetches)
    from_disk: list[int] = []
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, length, at: from_disk.append(length) or real(fd, length, at))
    handle.seek(0)
    while (position := handle.tell()) < 200 * KIB:  # spilled: memory holds the last 40 KiB or so
        assert handle.read(3000) == DATA[position : position + 3000]
    assert len(fake.fetches) == fetched and from_disk, "the second pass did not come from the spill file"
    assert sum(from_disk) <= 2 * 200 * KIB, f"{sum(from_disk)} bytes read from the spill file for 200 KiB"


def test_without_a_spill_file_the_windows_memory_dropped_are_fetched_again() -> None:
    ranged, fake = source(DATA, cache_bytes=40 * KIB)
    handle = ranged.open()
    while (position := handle.tell()) < 250 * KIB:
        assert handle.read(5000) == DATA[position : position + 5000]
    fetched = len(fake.fetches)
    handle.seek(0)
    assert handle.read(5000) == DATA[:5000] and len(fake.fetches) > fetched


def test_any_sequence_of_seeks_and_reads_returns_the_files_bytes_through_memory_and_spill(tmp_path: Path) -> None:
    rng = random.Random(7)
    ranged, _ = source(DATA, cache_bytes=24 * KIB, spill=tmp_path / "input.ranges")
    handles = [ranged.open(), ranged.open()]
    for _ in range(400):
        handle = rng.choice(handles)
        if rng.random() < 0.3:
            handle.seek(rng.randrange(len(DATA)))
        position = handle.tell()
        size = rng.choice([1, 100, 4096, 20000, 70000])
        assert handle.read(size) == DATA[position : position + size]
    spilled = ranged._spilled
    assert spilled == sorted(spilled) and all(a[1] < b[0] for a, b in itertools.pairwise(spilled))
    on_disk = (tmp_path / "input.ranges").read_bytes()
    assert spilled and all(on_disk[start:end] == DATA[start:end] for start, end in spilled), "the spill holds other bytes"
    prefix = ranged.contiguous_prefix()
    assert prefix <= len(DATA)
    ranged.copy_to(tmp_path / "whole")  # the held prefix (from memory and the spill), then the rest
    assert (tmp_path / "whole").read_bytes() == DATA


def test_a_failed_fetch_raises_and_is_kept_for_whoever_reads_through_a_decoder() -> None:
    fake = Fake(DATA, fail=(20 * KIB, len(DATA)), error=PermanentError("input was overwritten"))
    ranged = RangedInput(fake, len(DATA), "x.bin", min_block=4 * KIB, max_block=32 * KIB)
    handle = ranged.open()
    assert handle.read(10 * KIB) == DATA[: 10 * KIB]
    with pytest.raises(PermanentError, match="overwritten"):
        handle.read(20 * KIB)
    with pytest.raises(PermanentError, match="overwritten"):
        ranged.raise_failure()


def test_a_short_answer_is_a_transient_error_not_short_data() -> None:
    fake = Fake(DATA, short=True)
    ranged = RangedInput(fake, len(DATA), "x.bin", min_block=4 * KIB)
    with pytest.raises(TransientError, match="returned 4095 bytes"):
        ranged.open().read(10)
    assert isinstance(ranged.failure, TransientError)


def test_copy_to_writes_the_cached_prefix_then_the_rest_in_one_read(tmp_path: Path) -> None:
    ranged, fake = source(DATA)
    handle = ranged.open()
    handle.read(3 * KIB)
    handle.read(7 * KIB)  # two windows: [0, 4 KiB), [4 KiB, 12 KiB)
    assert fake.fetches == [(0, 4 * KIB), (4 * KIB, 12 * KIB)]
    fetched = len(fake.fetches)
    rests: list[int] = []

    def rest(start: int) -> io.BytesIO:
        rests.append(start)
        return io.BytesIO(DATA[start:])

    ranged.copy_to(tmp_path / "whole", rest)
    assert (tmp_path / "whole").read_bytes() == DATA
    assert rests == [12 * KIB] and len(fake.fetches) == fetched
    assert ranged.bytes_read == len(DATA) and ranged.calls == fetched + 1


def test_total_size_comes_from_the_content_range_of_a_ranged_answer() -> None:
    assert total_size({"ContentRange": "bytes 0-262143/1048576000", "ContentLength": 262144}) == 1048576000
    assert total_size({"ContentLength": 12}) == 12


def test_a_steps_first_read_takes_a_small_file_whole_and_a_segments_only_the_header() -> None:
    assert first_read("a/photo.mp4", 3_000_000, segment=False) == WHOLE  # small: one GET, as a whole-file read was
    assert first_read("a/long.mp4", WHOLE_BELOW + 1, segment=False) == FIRST_BLOCK  # a video to plan: its header
    assert first_read("a/photo.JPG", 0, segment=False) == WHOLE  # the size unknown (a later step's message)
    assert first_read("a/long.mp4", 0, segment=False) == FIRST_BLOCK
    assert first_read("a/long.mp4", 3_000_000, segment=True) == FIRST_BLOCK


# --- decoding through it ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clip(tmp_path_factory.mktemp("ranged") / "clip.mp4", seconds=8, fps=25, size=(160, 120), bit_rate=400_000, keyframe_every=25)


def frames(source: Path | RangedInput, start: int, end: int) -> list[tuple[int, NDArray[np.uint8]]]:
    info = probe(source)
    reader = FrameReader(source, info, Sampling(per_second=None, every_n_frames=1), max_frames=10_000, frames=(start, end))
    return [(frame.index, frame.image) for frame in reader]


def test_a_range_decoded_through_the_reader_is_the_range_decoded_from_the_file(video: Path) -> None:
    data = video.read_bytes()
    ranged = RangedInput(Fake(data), len(data), video.name, min_block=4 * KIB, max_block=16 * KIB)
    through_reader, from_file = frames(ranged, 90, 130), frames(video, 90, 130)
    assert [index for index, _ in through_reader] == list(range(90, 130)) == [index for index, _ in from_file]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(through_reader, from_file, strict=True))
    assert ranged.bytes_read < 0.6 * len(data)


def test_a_read_that_fails_mid_decode_raises_its_own_error_not_a_truncated_video(video: Path) -> None:
    data = video.read_bytes()
    fake = Fake(
        data, fail=(len(data) // 2, len(data) * 9 // 10), error=PermanentError("input s3://b/k was overwritten after this job was made")
    )
    ranged = RangedInput(fake, len(data), video.name, min_block=4 * KIB, max_block=16 * KIB)
    info = probe(ranged)  # the header, and the index at the end of an MP4: outside the failing bytes
    reader = FrameReader(ranged, info, Sampling(per_second=None, every_n_frames=1), max_frames=10_000)
    with pytest.raises(PermanentError, match="overwritten"):
        list(reader)


def test_a_segments_annotation_whose_read_fails_mid_decode_raises_the_read_error_not_a_shorter_video(video: Path, tmp_path: Path) -> None:
    """Annotation decodes the segment's range again through the same input: a read failing there (a connection
    reset, a version overwritten) must fail the segment with that error, as the frame reader does, rather than
    end the annotated video early (a merged annotated video silently shorter than the input) or drop it."""
    from worker.annotate import annotate_output
    from worker.processing import StepContext, StepOutput

    data = video.read_bytes()
    fake = Fake(data, fail=(len(data) // 2, len(data) * 9 // 10), error=TransientError("connection reset"))
    ranged = RangedInput(fake, len(data), video.name, min_block=4 * KIB, max_block=16 * KIB)
    context = StepContext("j", "detect", "b", "clip.mp4", "v", 1, tmp_path, None, ranged)
    document = {"frames": [], "media": {"kind": "video", "fps": 25.0}, "sampling": {"step": 1}}
    with pytest.raises(TransientError, match="connection reset"):
        output = annotate_output(tmp_path / "not-downloaded.mp4", context, StepOutput(document=document))
        pytest.fail(f"annotation ended without the read error: {output.document.get('annotation')}")


def test_an_input_decoded_through_and_dropped_is_freed_at_once_not_at_the_next_full_garbage_collection(video: Path, tmp_path: Path) -> None:
    """A worker holds up to ``CACHE_BYTES`` of windows per input; an input in a reference cycle (it keeps its file
    objects alive for OpenCV, and they pointed back at it) outlives its step until a full collection, which a worker
    with a large heap runs rarely: the cache bound then holds per input, not per worker. Garbage collection is off
    here, so only reference counting frees it."""
    import gc
    import weakref

    from worker.annotate import annotate_video

    data = video.read_bytes()
    ranged = RangedInput(Fake(data), len(data), video.name, min_block=4 * KIB, max_block=16 * KIB)
    gone = weakref.ref(ranged)
    enabled = gc.isenabled()
    gc.disable()
    try:
        assert len(frames(ranged, 90, 130)) == 40
        annotate_video(ranged, [], 25.0, {}, tmp_path / "annotated.mp4", start=90, end=130)
        assert ranged._cached > 0
        del ranged
        assert gone() is None, "the input (and its cached windows) outlived every reference to it"
    finally:
        if enabled:
            gc.enable()


def awkward(path: Path, vfr: bool = False, options: dict[str, str] | None = None, frames: int = 300) -> Path:
    """H.264 with two B-frames between references (decode order is not display order), a keyframe every 25 frames,
    its pts in milliseconds: 40 ms apart, or (``vfr``) 20 and 60 ms by turns of ten frames. ``options``: the muxer's."""
    from fractions import Fraction

    import av

    texture = np.random.default_rng(0).integers(0, 255, (120 + 64, 160 + 256, 3), np.uint8)
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.options = {"bf": "2", "g": "25"}
        stream.codec_context.time_base = Fraction(1, 1000)
        pts = 0
        for index in range(frames):
            dy, dx = (index * 3) % 64, (index * 7) % 256
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(texture[dy : dy + 120, dx : dx + 160]), format="bgr24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            pts += (20 if (index // 10) % 2 else 60) if vfr else 40
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize(
    ("name", "vfr", "options"),
    [
        ("b-frames.mp4", False, None),  # the index (moov) at the end: no faststart
        ("b-frames-faststart.mp4", False, {"movflags": "+faststart"}),
        ("b-frames.mov", False, None),
        ("b-frames.mkv", False, None),
        ("variable-rate.mkv", True, None),
        ("variable-rate.mp4", True, None),
        ("no-cues.mkv", False, {"live": "1"}),  # no index: a seek reads on from the start
    ],
)
def test_awkward_files_decode_through_the_reader_as_from_the_file(
    name: str, vfr: bool, options: dict[str, str] | None, tmp_path: Path
) -> None:
    path = awkward(tmp_path / name, vfr, options)
    data = path.read_bytes()
    ranged = RangedInput(Fake(data), len(data), path.name, min_block=16 * KIB, max_block=64 * KIB)
    assert probe(ranged) == probe(path)
    through_reader, from_file = frames(ranged, 140, 190), frames(path, 140, 190)
    assert [index for index, _ in through_reader] == list(range(140, 190)) == [index for index, _ in from_file]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(through_reader, from_file, strict=True))
    assert ranged.failure is None


@pytest.mark.parametrize("cut", ["index", "middle"])
def test_a_truncated_file_fails_through_the_reader_with_the_files_own_error(cut: str, tmp_path: Path) -> None:
    whole = awkward(tmp_path / ("whole.mp4" if cut == "index" else "whole.mkv")).read_bytes()
    path = tmp_path / ("cut.mp4" if cut == "index" else "cut.mkv")
    path.write_bytes(whole[: len(whole) // 2])  # an MP4 without its index at the end; an MKV without its last half
    ranged = RangedInput(Fake(path.read_bytes()), path.stat().st_size, path.name, min_block=16 * KIB, max_block=64 * KIB)
    with pytest.raises(PermanentError) as from_file:
        frames(path, 140, 190)
    with pytest.raises(PermanentError) as through_reader:
        frames(ranged, 140, 190)
    assert str(through_reader.value) == str(from_file.value)
    assert ("no decoder could open it" if cut == "index" else "truncated matroska video") in str(from_file.value)


def test_a_spill_file_that_cannot_be_written_drops_windows_as_without_one(tmp_path: Path) -> None:
    """A full or unwritable disk costs re-reads, not the step: the reads still return the file's bytes."""
    ranged, _ = source(DATA, cache_bytes=40 * KIB, spill=tmp_path / "no-such-folder" / "input.ranges")
    handle = ranged.open()
    for _ in range(2):
        handle.seek(0)
        while (position := handle.tell()) < 250 * KIB:
            assert handle.read(5000) == DATA[position : position + 5000]
    assert ranged.bytes_read > 250 * KIB  # read twice: nothing could be kept


def test_a_spill_file_that_filled_the_disk_part_way_is_still_removed_when_the_input_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills after a few windows are spilled: the reads go on (from memory, the spill and S3), and closing the
    input removes the spill file as it does a complete one: a full disk is not left fuller by a step that ended."""
    import errno
    import os

    spill = tmp_path / "input.ranges"
    ranged, _ = source(DATA, cache_bytes=40 * KIB, spill=spill)
    writes, real = [0], os.pwrite

    def pwrite(fd: int, data: bytes, at: int) -> int:
        writes[0] += 1
        if writes[0] > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, at)

    monkeypatch.setattr(os, "pwrite", pwrite)
    handle = ranged.open()
    for _ in range(2):
        handle.seek(0)
        while (position := handle.tell()) < 250 * KIB:
            assert handle.read(5000) == DATA[position : position + 5000]
    assert writes[0] > 2 and spill.exists()
    ranged.close()
    assert not spill.exists(), "the spill file outlived its input"
