"""The results of the steps a step runs after, read for its processor: exactly the attempts the job item committed.

A step of a graph reads its parents' results through ``StepContext.upstream``. The claim returns the job item as
it left it; each parent's ``result_file`` there names the committed attempt's ``result.json`` (a key unique to the
attempt), which is read now, and its side files on demand, from the same attempt's folder. A retry of a parent
(``gpupipe retry --from``) puts this step back to waiting, so its claim is lost and its commit refused: a result
computed from a fenced-out attempt is never recorded.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from pipeline_core.jobs import split_s3_uri
from pipeline_core.records import JobRecord
from worker.errors import TransientError
from worker.processing import UpstreamResult


def read_upstream(s3: Any, job: JobRecord | None, step: str, workdir: Path) -> dict[str, UpstreamResult]:
    """Each parent of ``step`` in ``job``'s graph: its committed result document, and its files on demand."""
    if job is None or job.step(step) is None:
        return {}
    results = {}
    for parent in job.graph.parents[step]:
        record = job.steps[parent]
        if record.result_file is None:
            raise TransientError(f"step {parent!r}, which {step!r} runs after, has no committed result")
        bucket, key = split_s3_uri(record.result_file)
        result = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        folder = workdir / "upstream" / parent
        results[parent] = UpstreamResult(
            step=parent,
            attempt=record.attempts,
            result_file=record.result_file,
            document=result.get("output") or {},
            files=tuple(result.get("files") or ()),
            fetch=_fetcher(s3, bucket, key.rsplit("/", 1)[0] + "/", folder),
        )
    return results


def _fetcher(s3: Any, bucket: str, prefix: str, folder: Path) -> Any:
    lock = threading.Lock()

    def fetch(name: str) -> Path:
        path = folder / name
        with lock:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, prefix + name, str(path))
        return path

    return fetch


def upstream_summary(upstream: dict[str, UpstreamResult]) -> dict[str, dict[str, Any]]:
    """What the result document records of the results it read: each parent's committed attempt."""
    return {name: {"attempt": result.attempt, "result_json": result.result_file} for name, result in upstream.items()}
