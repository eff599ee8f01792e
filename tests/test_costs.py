"""bench/costs.py: calls priced by API from its published-price constants, per video hour, and the printed table."""

from __future__ import annotations

import math

import pytest

from bench import costs

pytestmark = pytest.mark.unit


def test_requests_are_priced_by_service_and_an_api_without_a_price_is_refused() -> None:
    calls = {"ReceiveMessage": 3, "S3.GET": 2, "S3.PUT": 1, "GetItem": 4}
    expected = 3 * costs.SQS_PER_REQUEST + 2 * costs.S3_PER_GET + costs.S3_PER_PUT + 4 * costs.DYNAMODB_PER_RRU
    assert math.isclose(costs.request_cost_usd(calls), expected)
    assert costs.call_price("UpdateItem") > costs.call_price("GetItem")  # a write of the job item costs more than a read
    with pytest.raises(ValueError, match="ListBuckets"):
        costs.request_cost_usd({"ListBuckets": 1})


def test_an_hour_of_video_scales_one_videos_calls_and_adds_its_notification() -> None:
    hour = costs.per_video_hour({"S3.GET": 10, "ReceiveMessage": 6}, video_seconds=600)
    assert hour["S3.GET"] == 60 and hour["ReceiveMessage"] == 36
    assert hour["SendMessage"] == 6  # one S3 notification per video, six ten-minute videos an hour
    with pytest.raises(ValueError):
        costs.per_video_hour({"S3.GET": 1}, video_seconds=0)


def test_the_instance_share_of_a_file_falls_with_the_rate() -> None:
    assert costs.instance_cost_per_file_usd(2.0, 0.5) == pytest.approx(costs.instance_cost_per_file_usd(1.0, 0.5) / 2)
    with pytest.raises(ValueError):
        costs.instance_cost_per_file_usd(0, 0.5)


def test_the_table_prints_what_was_counted_and_a_formula_for_what_was_not() -> None:
    video_only = costs.cost_table(None, costs.Rates(), video_hour_calls={"S3.GET": 100})
    assert "(bench-throughput counts it)" in video_only and "/ (3.6 x images/s)" in video_only
    images = costs.cost_table({"S3.GET": 1, "S3.PUT": 2}, costs.Rates(images_per_second=10))
    assert "(bench-split counts it)" in images and "/ (3.6 x images/s)" not in images
    assert "Rekognition" in images


def test_the_deployed_modules_lambda_calls_are_priced_beside_the_workers() -> None:
    table = costs.cost_table({"S3.GET": 1}, costs.Rates())
    lambdas = costs.request_cost_usd(costs.LAMBDA_CALLS_PER_FILE)
    assert lambdas > 0 and f"${1000 * lambdas:.4f}" in table
