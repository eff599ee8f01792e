"""The processor interface: what a step's processor is given (``StepContext``) and returns (``StepOutput``), and the
interface of one that splits long videos (``SplittingProcessor``: it plans, processes ranges and merges).

A processor turns a local input file into a JSON document plus optional files (pictures) that are uploaded beside
it. It knows nothing of queues, claims or AWS: the step's lifecycle (``worker.lifecycle``) does those.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeGuard, runtime_checkable

from pipeline_core.segment_plan import Segment, VideoTimeline
from worker.ranged import RangedInput, Source


@dataclass(frozen=True)
class UpstreamResult:
    """The committed result of a step this one runs after: exactly the attempt the job item records as done, never
    "the latest" (a retried upstream step writes its new attempt elsewhere, and this step's commit is then refused)."""

    step: str
    attempt: int  # the attempt that committed it
    result_file: str  # s3://.../<step>/attempt-<n>/result.json
    document: Mapping[str, Any]  # its result.json's ``output``: the processor's document
    files: tuple[str, ...]  # the side files beside it (contact sheet, annotated video, ...)
    fetch: Callable[[str], Path] = field(repr=False, compare=False)  # one side file of that attempt, downloaded

    def file(self, name: str) -> Path:
        """The side file ``name`` of this attempt, as a local path (downloaded once)."""
        if name not in self.files:
            raise KeyError(f"{self.step}'s result has no file {name!r} (it has {', '.join(self.files) or 'none'})")
        return self.fetch(name)


@dataclass(frozen=True)
class StepContext:
    """What a processor knows about the work it is doing."""

    job_id: str
    step: str
    bucket: str
    key: str
    version: str
    attempt: int
    workdir: Path
    segment: Segment | None = None  # a split step's segment: process only its frame range (see ``SplittingProcessor``)
    # The input read in ranges (``worker.ranged``), for a processor with ``reads_ranges = True``: set for a segment,
    # whose ``path`` is then not downloaded (a segment reads its range and the container's index, not the file).
    source: RangedInput | None = None
    # The results of the steps this one runs after (its ``after``), by step name; {} for a root.
    upstream: Mapping[str, UpstreamResult] = field(default_factory=dict)


@dataclass
class StepOutput:
    """The result document and the files to upload beside it (name -> local path)."""

    document: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)


@runtime_checkable
class Processor(Protocol):
    name: str
    version: str

    def process(self, path: Path, context: StepContext) -> StepOutput: ...


@dataclass(frozen=True)
class SegmentPart:
    """One finished segment, as the merge sees it: its range, its committed result document and its files."""

    segment: Segment
    result: dict[str, Any]  # the segment's result.json (its ``output`` is the processor's document)
    files: dict[str, Path]  # the files it wrote, downloaded


@runtime_checkable
class SplittingProcessor(Processor, Protocol):
    """A processor that can split long videos (``SEGMENT_SECONDS``): it plans, processes ranges and merges.

    ``timeline`` says how the file's frames are sampled (None: not a video, never split);
    ``process`` honours ``context.segment``; ``merge`` makes the whole file's output from every segment's.
    With ``reads_ranges = True`` it also reads ranges: ``timeline`` takes a ``RangedInput`` (and plans from the
    header), and ``process`` of a segment reads ``context.source``, its ``path`` not downloaded.
    """

    def timeline(self, source: Source) -> VideoTimeline | None: ...

    def merge(self, parts: list[SegmentPart], context: StepContext) -> StepOutput: ...


def can_split(processor: Processor) -> TypeGuard[SplittingProcessor]:
    """Whether ``processor`` splits long videos (it has ``timeline`` and ``merge``)."""
    return isinstance(processor, SplittingProcessor)


def reads_ranges(processor: Processor) -> bool:
    """Whether a splitting processor reads its segments in ranges (``reads_ranges = True``)."""
    return getattr(processor, "reads_ranges", False) is True
