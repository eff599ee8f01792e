"""The fault proxy's rules (tests/support/faultproxy.py), pure: which calls a rule answers."""

from __future__ import annotations

import pytest

from tests.support.faultproxy import Rule

pytestmark = pytest.mark.unit

KEY_PATH = "/media-1/uploads/soak/video-retried.avi?versionId=abc"


def test_a_rule_on_a_path_answers_only_calls_whose_path_holds_it() -> None:
    rule = Rule(frozenset({"S3.GET"}), path_contains="/media-1/uploads/soak/video-retried.avi")
    assert rule.matches("S3.GET", b"", 0.0, KEY_PATH)
    assert not rule.matches("S3.GET", b"", 0.0, "/media-1/uploads/soak/video-0.avi")
    assert not rule.matches("S3.PUT", b"", 0.0, KEY_PATH)


def test_a_rule_lets_its_first_matches_through_then_answers_every_one() -> None:
    rule = Rule(frozenset({"S3.GET"}), path_contains="video-retried", after=2)
    assert [rule.matches("S3.GET", b"", 0.0, KEY_PATH) for _ in range(4)] == [False, False, True, True]


def test_calls_another_rule_or_the_draw_passes_over_do_not_spend_the_let_through_matches() -> None:
    rule = Rule(frozenset({"S3.GET"}), path_contains="video-retried", after=1, probability=0.5)
    assert not rule.matches("S3.GET", b"", 0.9, KEY_PATH)  # not drawn
    assert not rule.matches("S3.GET", b"", 0.0, "/media-1/other.avi")  # another key
    assert not rule.matches("S3.GET", b"", 0.0, KEY_PATH)  # the one let through
    assert rule.matches("S3.GET", b"", 0.0, KEY_PATH)
