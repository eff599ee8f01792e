"""Facts kept in two languages stay equal: the module's scaling defaults and the Python ones."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from pipeline_core.pipeline import DEFAULT_SCALING, ScalingPolicy
from pipeline_core.segment_plan import DEFAULT_SEGMENT_SECONDS, MIN_SEGMENT_SECONDS

pytestmark = pytest.mark.unit

TERRAFORM = Path(__file__).resolve().parents[1] / "terraform"


def optional_default(text: str, attribute: str) -> str:
    match = re.search(rf"^\s+{attribute}\s+= optional\([^,]+(?:\([^)]*\))*[^,]*, (.+)\)$", text, re.M)
    assert match, f"{attribute} has no optional() default"
    return match.group(1)


def test_step_scaling_defaults_match_the_python_defaults() -> None:
    for path in (TERRAFORM / "variables.tf", TERRAFORM / "modules" / "step" / "variables.tf"):
        text = path.read_text()
        # No table by default: the backlog-per-task policy.
        assert optional_default(text, "scaling_table") == "null", path
        assert DEFAULT_SCALING.table is None
        assert float(optional_default(text, "target_backlog_per_task")) == DEFAULT_SCALING.target_backlog_per_task, path
        assert float(optional_default(text, "scale_in_cooldown_seconds")) == DEFAULT_SCALING.scale_in_cooldown_seconds, path
        assert int(optional_default(text, "max_tasks")) == DEFAULT_SCALING.max_tasks, path
        assert int(optional_default(text, "min_tasks")) == DEFAULT_SCALING.min_tasks, path
        assert float(optional_default(text, "idle_seconds")) == DEFAULT_SCALING.idle_seconds, path


def test_segment_defaults_match_the_python_defaults() -> None:
    root = (TERRAFORM / "variables.tf").read_text()
    for path in (TERRAFORM / "variables.tf", TERRAFORM / "modules" / "step" / "variables.tf"):
        assert float(optional_default(path.read_text(), "segment_seconds")) == DEFAULT_SEGMENT_SECONDS, path
    assert f"step.segment_seconds >= {MIN_SEGMENT_SECONDS:g}" in root


def test_every_scaling_field_reaches_the_rendered_pipeline_definition() -> None:
    # Each ScalingPolicy field is a step input and is rendered into PIPELINE_CONFIG (terraform/main.tf).
    main = (TERRAFORM / "main.tf").read_text()
    rendered = main[main.index("pipeline_configs = [") :]
    for field in fields(ScalingPolicy):
        name = "scaling_table" if field.name == "table" else field.name
        assert re.search(rf"^\s+{name}\s+= step\.{name}$", rendered, re.M), name


def test_step_worker_defaults_match_the_worker_config() -> None:
    from worker.config import WorkerConfig

    config = WorkerConfig.from_env({"QUEUE_URL": "q", "JOBS_TABLE": "t", "STEP_NAME": "s", "RESULTS_BUCKET": "b"})
    for path in (TERRAFORM / "variables.tf", TERRAFORM / "modules" / "step" / "variables.tf"):
        text = path.read_text()
        assert int(optional_default(text, "concurrency")) == config.concurrency, path
        assert int(optional_default(text, "max_attempts")) == config.max_attempts, path
        assert float(optional_default(text, "timeout_seconds")) == config.step_timeout_seconds, path
        assert int(optional_default(text, "visibility_timeout")) == config.visibility_timeout, path
        assert float(optional_default(text, "grace_seconds")) == config.grace_seconds, path
        assert optional_default(text, "annotate") == str(config.annotate).lower(), path
        assert int(optional_default(text, "segments_in_flight")) == config.segments_in_flight, path


def test_the_plan_time_gpu_warning_knows_the_detectors_the_worker_has() -> None:
    from worker.detection.engine import DEFAULT_DETECTORS
    from worker.detection.model import REGISTRY
    from worker.plugins import resolve

    text = (TERRAFORM / "main.tf").read_text()

    def names(local: str) -> list[str]:
        match = re.search(rf"^\s+{local}\s+= \[([^\]]*)\]$", text, re.M)
        assert match, f"{local} is not a list literal in terraform/main.tf"
        return re.findall(r'"([^"]+)"', match.group(1))

    # CPU-only: the class itself says it runs on the CPU; GPU-capable ones find out when built.
    cpu_only = sorted(name for name in REGISTRY if getattr(resolve(name, REGISTRY, "detector"), "device", None) == "CPU")
    assert sorted(names("cpu_only_detectors")) == cpu_only == ["people-hog"]
    assert names("default_detectors") == [spec["name"] for spec in DEFAULT_DETECTORS]
