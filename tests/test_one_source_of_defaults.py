"""Facts kept in two languages stay equal: the module's scaling defaults and the Python ones."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline_core.pipeline import DEFAULT_SCALING

TERRAFORM = Path(__file__).resolve().parents[1] / "terraform"


def optional_default(text: str, attribute: str) -> str:
    match = re.search(rf"^\s+{attribute}\s+= optional\([^,]+(?:\([^)]*\))*[^,]*, (.+)\)$", text, re.M)
    assert match, f"{attribute} has no optional() default"
    return match.group(1)


def test_step_scaling_defaults_match_the_python_defaults() -> None:
    for path in (TERRAFORM / "variables.tf", TERRAFORM / "modules" / "step" / "variables.tf"):
        text = path.read_text()
        table = [tuple(int(n) for n in row) for row in re.findall(r"\[(\d+), (\d+)\]", optional_default(text, "scaling_table"))]
        assert tuple(table) == DEFAULT_SCALING.table, path
        assert int(optional_default(text, "max_tasks")) == DEFAULT_SCALING.max_tasks, path
        assert int(optional_default(text, "min_tasks")) == DEFAULT_SCALING.min_tasks, path
        assert float(optional_default(text, "idle_seconds")) == DEFAULT_SCALING.idle_seconds, path


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
