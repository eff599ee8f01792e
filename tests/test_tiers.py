"""The test tiers: every test has exactly one that fits what it uses, and the CI runner reads each tier's result."""

from __future__ import annotations

import pytest

from tests.conftest import tier_problem
from tools.ci import pytest_counts

pytestmark = pytest.mark.unit


def test_a_test_with_no_tier_or_two_is_refused() -> None:
    assert "none" in (tier_problem([], set()) or "")
    assert "['unit', 'e2e']" in (tier_problem(["unit", "e2e"], set()) or "")
    assert tier_problem(["integration"], {"stack", "tmp_path"}) is None


@pytest.mark.parametrize(
    ("tier", "fixture"),
    [("unit", "moto_endpoint"), ("unit", "stack"), ("unit", "spawn"), ("integration", "spawn"), ("workers", "local_stack")],
)
def test_a_tier_may_not_use_what_a_slower_tier_needs(tier: str, fixture: str) -> None:
    assert f"uses {fixture}" in (tier_problem([tier], {fixture, "tmp_path"}) or "")


def test_the_runner_reads_pytests_closing_line() -> None:
    log = "....F.\nFAILED tests/test_x.py::test_y\n===== 1 failed, 5 passed, 2 skipped, 200 deselected, 1 error in 12.31s =====\n"
    counts, line = pytest_counts(log)
    assert counts == {"failed": 1, "passed": 5, "skipped": 2, "deselected": 200, "error": 1}
    assert line == "1 failed, 5 passed, 2 skipped, 200 deselected, 1 error in 12.31s"
    assert pytest_counts("no summary here\n") == ({}, "")
