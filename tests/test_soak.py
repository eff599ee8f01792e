"""A short smoke run of `make soak`: chaos signals and AWS faults, and still every job ends with the right bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import soak

pytestmark = pytest.mark.e2e


def test_a_short_soak_ends_every_job_with_the_right_bytes_and_no_crash(tmp_path: Path) -> None:
    figures = soak.run(jobs=30, workers=2, chaos_seconds=30, settle_seconds=90, seed=1, fault_rate=0.03, logs=tmp_path)
    print("\n" + soak.report(figures))
    assert figures.succeeded + figures.failed + figures.stuck == figures.submitted == 30
    assert (figures.stuck, figures.wrong_bytes, figures.crashes) == (0, 0, 0), soak.report(figures)
    assert figures.kills + figures.pauses + figures.terms > 0 and figures.faults > 0, "the smoke run injected no chaos"
