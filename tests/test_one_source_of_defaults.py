"""Facts kept in two languages stay equal: the module's scaling defaults and the Python ones."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline_core.pipeline import DEFAULT_SCALING
from pipeline_core.segments import DEFAULT_SEGMENT_SECONDS, MIN_SEGMENT_SECONDS

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


def test_segment_defaults_match_the_python_defaults() -> None:
    root = (TERRAFORM / "variables.tf").read_text()
    for path in (TERRAFORM / "variables.tf", TERRAFORM / "modules" / "step" / "variables.tf"):
        assert float(optional_default(path.read_text(), "segment_seconds")) == DEFAULT_SEGMENT_SECONDS, path
    assert f"step.segment_seconds >= {MIN_SEGMENT_SECONDS:g}" in root
