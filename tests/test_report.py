"""gpupipe report: the page's contents, escaping, --failed, and a command line that reads as help."""

from __future__ import annotations

import argparse
import re
from typing import Any

import pytest
from markupsafe import escape

from gpupipe.cli import build_parser
from gpupipe.report import build_view, failed_lines, render, series
from pipeline_core.records import JobRecord

pytestmark = pytest.mark.unit

HOSTILE = 'uploads/<script>window.pwned = 1</script>"onerror=x.mp4'


def job(job_id: str, key: str, status: str, error: str | None = None) -> JobRecord:
    step: dict[str, Any] = {"state": "done" if status == "succeeded" else "failed", "attempts": 1}
    if error:
        step["error"] = error
    else:
        step["result_file"] = f"s3://b/results/{job_id}/detect/result.json"
    item = {
        "job_id": job_id,
        "bucket": "b",
        "key": key,
        "version": "v1",
        "status": status,
        "step_names": ["detect"],
        "steps": {"detect": step},
        "created_at": 100.0,
        "updated_at": 112.5,
    }
    return JobRecord.parse(item)


def result(duration: float = 10.0) -> dict[str, Any]:
    frames = [
        {"index": i * 15, "timestamp": i * 0.5, "detections": [{"label": "person", "score": 0.9, "box": [0, 0, 1, 1]}] * (i % 3)}
        for i in range(20)
    ]
    return {
        "worker_id": "w-1",
        "timings": {"upload": 0.2, "total": 3.1},
        "output": {
            "media": {"kind": "video", "format": "mp4", "width": 640, "height": 480, "fps": 30.0, "duration": duration},
            "models": [{"name": "people-hog", "version": "1", "labels": ["person"], "device": "CPU"}],
            "frames": frames,
            "summary": {"person": {"max_count": 2, "mean_count": 1.0, "frames_with": 13, "first_seen": 0.5, "last_seen": 9.5}},
            "timings": {"inference": 1.5, "annotate": 0.4},
            "pictures": {"contact_sheet": "contact-sheet.jpg", "annotated": "annotated.mp4"},
            "annotation": {"file": "annotated.mp4", "frames": 300, "bytes": 812345},
        },
    }


def page(jobs: list[JobRecord], results: dict[tuple[str, str], Any]) -> str:
    return render(build_view(jobs, results, lambda job_id, step, file: f"media/{job_id}/{step}/{file}"), "report", 0.0)


def test_a_video_job_shows_its_video_timeline_model_device_timings_and_label_table() -> None:
    text = page([job("j1", "uploads/street.mp4", "succeeded")], {("j1", "detect"): result()})
    assert '<video class="annotated"' in text and 'src="media/j1/detect/annotated.mp4"' in text
    assert 'data-duration="10.0"' in text and text.count('class="mark"') == 13  # a mark per sampled frame with detections
    assert "people-hog 1 on <b>CPU</b>" in text
    assert "inference 1.50 s" in text and "total 3.10 s" in text
    assert re.search(r"<td>.*person</td><td>2</td><td>1.0</td><td>13</td>", text)
    assert 'data-t="0.5"' in text and 'src="media/j1/detect/contact-sheet.jpg"' in text
    assert "finished 1970-01-01 00:01:52 UTC (12.5 s)" in text


def test_a_step_without_annotation_says_how_to_turn_it_on() -> None:
    plain = result()
    del plain["output"]["annotation"], plain["output"]["pictures"]["annotated"]
    text = page([job("j1", "uploads/street.mp4", "succeeded")], {("j1", "detect"): plain})
    assert "<video" not in text and "option is off" in text and "annotate = true" in text


def test_timeline_points_span_the_videos_duration() -> None:
    timeline = series(result(duration=10.0)["output"], ["person"])
    assert timeline is not None
    xs = [float(point.split(",")[0]) for point in timeline["lines"][0]["points"].split()]
    assert xs[0] == 0 and xs[-1] == pytest.approx(950.0)  # 9.5 s of 10 s
    assert series({"media": {"kind": "image"}, "frames": [{"timestamp": 0, "detections": []}]}, ["person"]) is None


def test_keys_and_reasons_are_text_never_markup() -> None:
    reason = 'corrupt video: <img src=x onerror="window.pwned=2">'
    text = page([job("j2", HOSTILE, "failed", reason)], {})
    assert "<script>window.pwned" not in text and "<img src=x" not in text
    assert str(escape(HOSTILE)) in text and str(escape(reason)) in text
    assert text.count("<script>") == 1  # the page's own


def test_a_failed_job_shows_its_reason_and_the_retry_command() -> None:
    text = page([job("abc123", "uploads/broken.mp4", "failed", "not a supported image or video")], {})
    assert "not a supported image or video" in text and "gpupipe retry abc123" in text
    lines = failed_lines([job("abc123", "uploads/broken.mp4", "failed", "truncated mp4 video"), job("ok", "uploads/a.png", "succeeded")])
    assert lines == ["abc123  uploads/broken.mp4", "    detect: truncated mp4 video", "    retry: gpupipe retry abc123"]


def test_help_reads_as_help() -> None:
    parser = build_parser()
    text = parser.format_help()
    assert "``" not in text and "examples:" in text
    assert text.rstrip().endswith("for a command's options and examples.")  # not cut off mid-list
    subcommands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    assert set(subcommands.choices) == {"submit", "status", "results", "report", "retry", "doctor"}
    for name, sub in [("gpupipe", parser), *subcommands.choices.items()]:
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
        if sub is not parser:
            assert f"gpupipe {name}" in (sub.epilog or ""), f"{name} has no example"
