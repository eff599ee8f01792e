"""``gpupipe report``: one static HTML page of jobs and what they found, to open from a folder or from S3.

For each job: its status, timings, model and device, the annotated video with a timeline of counts under it
(a click seeks the video), the contact sheet, a table per label, and the reason for a failure with the
``gpupipe retry`` command that runs it again.

- **Self-contained.** One HTML file, its style and script inline (no CDN: it works offline). Pictures are
  inlined as ``data:`` URIs. Videos are files beside the page (``--out DIR``: ``DIR/index.html`` and
  ``DIR/media/...``), or, with ``--upload``, presigned URLs of the result objects in S3 and the page itself
  uploaded beside the results, printed as a presigned URL: nothing needs a server.
- **Escaped.** Keys are user input: the template (Jinja2) escapes every value, and the page carries no data in
  a ``<script>``; the script reads numbers from ``data-`` attributes.

``build_view`` (pure) turns job items and result documents into what the template shows; ``render`` is the
template; ``collect`` and ``main`` do the S3 and DynamoDB I/O.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from pipeline_core.jobs import JobStatus, StepState, split_s3_uri
from pipeline_core.records import JobRecord, StepRecord

TEMPLATES = Path(__file__).with_name("templates")
PAGE = "index.html"
MAX_INLINE_BYTES = 8 * 1024 * 1024  # pictures above this are linked, not inlined
TIMELINE_WIDTH, TIMELINE_HEIGHT = 1000, 120


@dataclass
class StepView:
    name: str
    state: str
    error: str | None = None
    attempts: int | None = None
    worker: str | None = None
    media: dict[str, Any] = field(default_factory=dict)
    models: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    labels: list[dict[str, Any]] = field(default_factory=list)  # the per-label table
    video: str | None = None  # URL of the annotated video
    image: str | None = None  # URL of the annotated image
    contact_sheet: str | None = None
    annotation: dict[str, Any] = field(default_factory=dict)
    timeline: dict[str, Any] | None = None  # the SVG's series and the duration it spans
    segments: int = 0


@dataclass
class JobView:
    job_id: str
    key: str
    name: str
    status: str
    created: str
    finished: str | None
    seconds: float | None
    steps: list[StepView]
    retry: str | None  # the command that runs its failed steps again


# --- the view (pure) ---------------------------------------------------------------------------------


def when(epoch: Any) -> str | None:
    if epoch in (None, ""):
        return None
    return datetime.fromtimestamp(float(epoch), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def retry_command(job: JobRecord) -> str | None:
    """``gpupipe retry JOB_ID`` for a failed job (the id: keys can hold anything), else None."""
    return f"gpupipe retry {shlex.quote(job.job_id)}" if job.status == JobStatus.FAILED else None


def series(document: Mapping[str, Any], labels: Sequence[str]) -> dict[str, Any] | None:
    """The timeline under the video: per label, (x, y) points in the SVG's box, and the time span (seconds)."""
    frames = document.get("frames") or []
    media = document.get("media") or {}
    if media.get("kind") != "video" or not frames:
        return None
    times = [float(frame["timestamp"]) for frame in frames]
    duration = float(media.get("duration") or 0) or max(times) or 1.0
    duration = max(duration, max(times))
    counts = {label: [sum(1 for d in frame["detections"] if d["label"] == label) for frame in frames] for label in labels}
    top = max([max(values, default=0) for values in counts.values()] + [1])
    plot = TIMELINE_HEIGHT - 20
    lines = []
    for index, (label, values) in enumerate(sorted(counts.items())):
        points = " ".join(
            f"{t / duration * TIMELINE_WIDTH:.1f},{TIMELINE_HEIGHT - 10 - v / top * plot:.1f}" for t, v in zip(times, values, strict=True)
        )
        lines.append({"label": label, "points": points, "colour": colour(index)})
    marks = [
        {"x": round(t / duration * TIMELINE_WIDTH, 1), "t": round(t, 3), "n": sum(counts[label][i] for label in counts)}
        for i, t in enumerate(times)
        if any(counts[label][i] for label in counts)
    ]
    return {"duration": round(duration, 3), "lines": lines, "marks": marks, "top": top, "width": TIMELINE_WIDTH, "height": TIMELINE_HEIGHT}


PALETTE = ["#28c828", "#e62828", "#1e8ce6", "#c828c8", "#dcc81e", "#787878"]  # the pictures' colours, as CSS


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def step_view(step: StepRecord, result: Mapping[str, Any] | None, url: Callable[[str], str | None]) -> StepView:
    """One step of one job; ``url(file name)`` says where a file of its result is, for the page (None: absent)."""
    view = StepView(
        name=step.name,
        state=step.state.value,
        error=step.error,
        attempts=step.attempts,
        worker=step.worker_id,
        segments=step.segment_count,
    )
    if not result:
        return view
    document = result.get("output") or {}
    view.worker = view.worker or result.get("worker_id")
    view.media = dict(document.get("media") or {})
    view.models = list(document.get("models") or [])
    view.timings = {
        k: v for k, v in {**(document.get("timings") or {}), **(result.get("timings") or {})}.items() if isinstance(v, int | float)
    }
    summary = document.get("summary") or {}
    labels = sorted(summary)
    view.labels = [{"label": label, "colour": colour(i), **summary[label]} for i, label in enumerate(labels)]
    pictures = document.get("pictures") or {}
    view.annotation = dict(document.get("annotation") or {})
    annotated = pictures.get("annotated")
    if annotated and str(annotated).endswith(".mp4"):
        view.video = url(str(annotated))
    elif annotated:
        view.image = url(str(annotated))
    if pictures.get("contact_sheet"):
        view.contact_sheet = url(str(pictures["contact_sheet"]))
    view.timeline = series(document, labels)
    return view


def build_view(
    jobs: Sequence[JobRecord], results: Mapping[tuple[str, str], Mapping[str, Any]], url: Callable[[str, str, str], str | None]
) -> list[JobView]:
    """Jobs as the page shows them; ``results[(job id, step)]`` is the step's result.json, ``url(job id, step, file)`` a file's URL."""
    views = []
    for job in jobs:
        job_id = job.job_id
        steps = [step_view(step, results.get((job_id, name)), _step_url(url, job_id, name)) for name, step in job.steps.items()]
        created = job.created_at
        finished = job.updated_at if job.ended else None
        views.append(
            JobView(
                job_id=job_id,
                key=job.key,
                name=Path(job.key).name,
                status=job.status.value,
                created=when(created) or "?",
                finished=when(finished),
                seconds=round(finished - created, 1) if finished is not None else None,
                steps=steps,
                retry=retry_command(job),
            )
        )
    return views


def _step_url(url: Callable[[str, str, str], str | None], job_id: str, step: str) -> Callable[[str], str | None]:
    return lambda file: url(job_id, step, file)


def render(views: Sequence[JobView], title: str, generated: float) -> str:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True, lstrip_blocks=True)
    counts = {status: sum(1 for v in views if v.status == status) for status in ("succeeded", "failed", "running", "pending")}
    return environment.get_template("report.html.j2").render(jobs=views, title=title, generated=when(generated), counts=counts)


def failed_lines(jobs: Sequence[JobRecord]) -> list[str]:
    """``gpupipe report --failed`` on the terminal: each failed job, its failed steps' reasons, and the retry command."""
    lines = []
    for job in jobs:
        if job.status != JobStatus.FAILED:
            continue
        lines.append(f"{job.job_id}  {job.key}")
        for name, step in job.steps.items():
            if step.state == StepState.FAILED or step.error:
                lines.append(f"    {name}: {step.error or 'failed'}")
        lines.append(f"    retry: {retry_command(job)}")
    return lines


# --- I/O -------------------------------------------------------------------------------------------------


def data_uri(path: Path) -> str | None:
    if not path.is_file() or path.stat().st_size > MAX_INLINE_BYTES:
        return None
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"


def collect(
    s3: Any, jobs: Sequence[JobRecord], out: Path, presign_seconds: int | None = None
) -> tuple[dict[tuple[str, str], Any], Callable[[str, str, str], str | None]]:
    """Each finished step's result.json and files; and where the page finds each file.

    Files are downloaded under ``out/media/JOB/STEP/``. Pictures are inlined; a video is the relative path of its
    download, or with ``presign_seconds`` a presigned URL of its object (the page then needs no folder).
    """
    results: dict[tuple[str, str], Any] = {}
    locations: dict[tuple[str, str, str], tuple[str, str, Path]] = {}
    for job in jobs:
        for name, step in job.steps.items():
            if not step.result_file:
                continue
            bucket, key = split_s3_uri(step.result_file)
            folder = out / "media" / job.job_id / name
            folder.mkdir(parents=True, exist_ok=True)
            result = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            results[(job.job_id, name)] = result
            prefix = key.rsplit("/", 1)[0] + "/"
            for file in result.get("files", []):
                target = folder / file
                if presign_seconds is None or not file.endswith(".mp4"):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    s3.download_file(bucket, prefix + file, str(target))
                locations[(job.job_id, name, file)] = (bucket, prefix + file, target)

    def url(job_id: str, step: str, file: str) -> str | None:
        found = locations.get((job_id, step, file))
        if found is None:
            return None
        bucket, key, path = found
        if file.endswith(".mp4"):
            if presign_seconds is not None:
                return str(s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=presign_seconds))
            return path.relative_to(out).as_posix()
        return data_uri(path) or path.relative_to(out).as_posix()

    return results, url


def write_report(s3: Any, jobs: Sequence[JobRecord], out: Path, title: str, presign_seconds: int | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    results, url = collect(s3, jobs, out, presign_seconds)
    page = out / PAGE
    page.write_text(render(build_view(jobs, results, url), title, time.time()), encoding="utf-8")
    return page
