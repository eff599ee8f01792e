"""Jobs as the pipeline leaves them, for the report's tests: a result in S3 and a job item that names it, or a failure."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pipeline_core.jobs import result_prefix
from pipeline_core.jobstore import JobStore
from pipeline_core.segment_plan import Segment
from tests.support.aws import StepStack
from worker.processing import Processor, SegmentPart, StepContext, StepOutput

STEP = "detect"


def run(processor: Processor, path: Path, workdir: Path, segments: list[Segment] | None = None) -> StepOutput:
    """What the worker's processor writes for ``path``: one pass, or each segment and then the merge."""
    if not segments:
        workdir.mkdir(parents=True, exist_ok=True)
        return processor.process(path, StepContext("job", STEP, "b", path.name, "v", 1, workdir))
    parts = []
    for segment in segments:
        folder = workdir / f"segment-{segment.index}"
        folder.mkdir(parents=True)
        output = processor.process(path, StepContext("job", STEP, "b", path.name, "v", 1, folder, segment))
        parts.append(SegmentPart(segment, {"output": json.loads(json.dumps(output.document))}, output.files))
    merged = workdir / "merge"
    merged.mkdir()
    return processor.merge(parts, StepContext("job", STEP, "b", path.name, "v", 2, merged))  # type: ignore[attr-defined]


def succeeded(stack: StepStack, key: str, media: Path, output: StepOutput) -> str:
    """Upload ``media`` as ``key``, its result and files where the worker puts them, and commit the job; its id."""
    store = JobStore(stack.table)
    stack.put(key, media.read_bytes())
    obj = stack.object_ref(key)
    store.create_job(obj, [STEP], time.time())
    claim = store.claims.claim(obj.job_id, STEP, "worker-1", "message-1", time.time(), 60)
    prefix = result_prefix("results/", key, obj.job_id, STEP, claim.attempt)
    for name, path in output.files.items():
        stack.aws["s3"].upload_file(str(path), stack.bucket, prefix + name)
    document = {"job_id": obj.job_id, "step": STEP, "attempt": claim.attempt, "worker_id": "worker-1", "output": output.document}
    document |= {"files": sorted(output.files), "timings": {"upload": 0.1}}
    stack.aws["s3"].put_object(Bucket=stack.bucket, Key=prefix + "result.json", Body=json.dumps(document).encode())
    store.claims.mark_done(claim, time.time(), f"s3://{stack.bucket}/{prefix}result.json", {"upload": 0.1})
    return obj.job_id


def failed(stack: StepStack, key: str, body: bytes, reason: str) -> str:
    store = JobStore(stack.table)
    stack.put(key, body)
    obj = stack.object_ref(key)
    store.create_job(obj, [STEP], time.time())
    store.claims.mark_failed(store.claims.claim(obj.job_id, STEP, "worker-1", "message-1", time.time(), 60), time.time(), reason)
    return obj.job_id


def outputs_file(stack: StepStack, folder: Path) -> Path:
    path = folder / "outputs.json"
    names: dict[str, Any] = {"bucket_name": stack.bucket, "input_prefix": "uploads/", "results_prefix": "results/"}
    path.write_text(json.dumps(names | {"jobs_table_name": stack.table_name}))
    return path


def street_output(folder: Path, frames: int = 30) -> tuple[Path, StepOutput]:
    """A short street video and what the detect processor (people-hog), annotating, writes for it."""
    from tools.sample_media import video
    from worker.registry import load_processor

    street = video(folder / "street.mp4", frames=frames)
    processor = load_processor("detect", {"detectors": [{"name": "people-hog"}], "sample_fps": 2}, annotate=True)
    return street, run(processor, street, folder / "work")
