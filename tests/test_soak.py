"""A short smoke run of `make soak`: chaos signals and AWS faults, and still every job ends with the right bytes,
each split video's merged result equals a single pass over it, and a failed one recovers after `gpupipe retry`."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import soak

pytestmark = pytest.mark.e2e


def test_a_short_soak_ends_every_job_with_the_right_bytes_and_no_crash(tmp_path: Path) -> None:
    figures = soak.run(
        jobs=24, workers=2, chaos_seconds=30, settle_seconds=120, seed=1, fault_rate=0.03, logs=tmp_path, videos=2, retry=True
    )
    print("\n" + soak.report(figures))
    assert figures.succeeded + figures.failed + figures.stuck == figures.submitted == 24
    assert figures.videos_succeeded + figures.videos_failed + figures.videos_stuck == figures.videos == 3
    zeros = (figures.stuck, figures.videos_stuck, figures.wrong_bytes, figures.mismatches, figures.crashes)
    assert zeros == (0, 0, 0, 0, 0), soak.report(figures)
    assert figures.merged_equal == figures.videos_succeeded > 0 and figures.segments > 2 * figures.videos_succeeded, soak.report(figures)
    assert (figures.retried, figures.recovered) == (1, 1), soak.report(figures)
    assert figures.kills + figures.pauses + figures.terms > 0 and figures.faults > 0, "the smoke run injected no chaos"
    assert figures.ok
