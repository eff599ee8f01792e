"""What a file costs on AWS: its requests at published prices, and its share of a GPU instance's hour.

Pure: published prices as constants (each with its source and the date it was read), and functions from
counted calls (by API, per file) and a measured rate (files per second) to dollars. The benchmarks
(`bench/throughput.py`, `bench/split_bench.py`) count the calls through the fault proxy and print
``cost_table``.

Prices are AWS's list prices in us-east-1 (N. Virginia), without free tiers, as published on the pages
named below; they were written down from those pages as known on PRICES_READ and were not re-read
online from this machine (it has no internet): check them before quoting a figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

PRICES_READ = "as published up to 2025; on 2026-12-03 only SQS's rate and Rekognition's API groups were re-checked, from stored copies"

# --- request prices, USD per request -----------------------------------------------------------------
# https://aws.amazon.com/sqs/pricing/ : Standard queue, $0.40 per million requests (each 64 KB chunk of a
# payload is one request; a batch of up to 10 messages is one request). Still the rate in March 2026
# (https://cloudburn.io/blog/amazon-sqs-pricing, "All prices are for US East (N. Virginia) as of March 2026").
SQS_PER_REQUEST = 0.40 / 1_000_000
# https://aws.amazon.com/dynamodb/pricing/on-demand/ : on-demand, $0.625 per million write request units and
# $0.125 per million read request units (after the 2024-11-01 price cut). A standard write of an item up to
# 1 KB is one WRU (a transactional write two); a strongly consistent read of up to 4 KB is one RRU.
DYNAMODB_PER_WRU = 0.625 / 1_000_000
DYNAMODB_PER_RRU = 0.125 / 1_000_000
# https://aws.amazon.com/s3/pricing/ : S3 Standard, PUT, COPY, POST, LIST $0.005 per 1,000 requests;
# GET, SELECT and all other requests $0.0004 per 1,000.
S3_PER_PUT = 0.005 / 1_000
S3_PER_GET = 0.0004 / 1_000
# https://aws.amazon.com/sns/pricing/ : standard topics, $0.50 per million API requests (publishes).
SNS_PER_PUBLISH = 0.50 / 1_000_000

# --- instance prices, USD per hour --------------------------------------------------------------------
# https://aws.amazon.com/ec2/pricing/on-demand/ : g4dn.xlarge (1 T4 GPU, 4 vCPU, 16 GiB), Linux, $0.526 per hour.
G4DN_XLARGE_ON_DEMAND = 0.526
# https://aws.amazon.com/ec2/spot/pricing/ : g4dn.xlarge Linux Spot in us-east-1 moves by hour and zone; about
# $0.21 per hour was typical when read (roughly 60 % off On-Demand). An assumption, not a quote.
G4DN_XLARGE_SPOT = 0.21

# --- managed alternatives, USD ---------------------------------------------------------------------------
# https://aws.amazon.com/rekognition/pricing/ : Image, first 1 million images a month, $0.001 per image per API
# call. DetectLabels (people) and DetectFaces (faces) are both Group 2 APIs (the page lists CompareFaces,
# IndexFaces, SearchFacesByImage and SearchFaces as Group 1; checked on a stored copy, 2026-12-03); people and
# faces are two calls.
REKOGNITION_IMAGE_PER_API = 0.001
# Same page, Video (stored video analysis): label detection $0.10 per minute, face detection $0.10 per minute.
REKOGNITION_VIDEO_PER_MINUTE_PER_API = 0.10

# How big the items are that the worker writes, for DynamoDB's units: a job item of one step is under 2 KB,
# so each conditional update of it costs 2 WRUs (updates are charged on the larger of the item before and after).
JOB_ITEM_KB = 2

# What an API call costs, by the name the fault proxy counts it under (``tests/support/faultproxy.py``).
_SQS = {
    "ReceiveMessage",
    "DeleteMessage",
    "DeleteMessageBatch",
    "ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch",
    "SendMessage",
    "SendMessageBatch",
    "GetQueueAttributes",
}
_DYNAMODB_WRITES = {"PutItem", "UpdateItem", "DeleteItem"}
_DYNAMODB_READS = {"GetItem"}
_S3_PUTS = {"S3.PUT", "S3.POST"}
_S3_GETS = {"S3.GET", "S3.HEAD"}

# The request SQS is charged for before the worker sees a file: S3's event notification (SendMessage).
NOTIFICATION_CALLS: Mapping[str, float] = {"SendMessage": 1.0}

# What a deployed one-step pipeline calls per file beyond the worker's calls the benchmarks count (they send S3
# events straight to the step's queue, where the worker creates the job with its step claimed: one PutItem).
# Counted by tests/test_calls_per_file.py (the real intake and router handlers and a real worker through the fault
# proxy), which fails when this table and the code part: intake creates the job (the PutItem, in place of the
# worker's); the router sends the step's message (SendMessage); the worker claims the job (UpdateItem: the write
# the benchmarks' create_claimed saves); the router records the end (UpdateItem, set_status) and claims its
# announcement (UpdateItem) before publishing it (Publish). Lambda's own charges (invocations, duration), the
# scaler's wake-up (one Invoke per step per routed batch, not per file) and the event source mappings' receives,
# batched up to ten, are left out.
LAMBDA_CALLS_PER_FILE: Mapping[str, float] = {"SendMessage": 1.0, "UpdateItem": 3.0, "Publish": 1.0}


def call_price(api: str) -> float:
    """USD for one call of ``api`` (as the fault proxy names it); ValueError for an API without a price here."""
    if api in _SQS:
        return SQS_PER_REQUEST
    if api in _DYNAMODB_WRITES:
        return JOB_ITEM_KB * DYNAMODB_PER_WRU
    if api == "TransactWriteItems":
        return 2 * 2 * JOB_ITEM_KB * DYNAMODB_PER_WRU  # two items, each a transactional write (two WRUs per KB)
    if api in _DYNAMODB_READS:
        return DYNAMODB_PER_RRU
    if api == "BatchGetItem":
        return 10 * DYNAMODB_PER_RRU  # up to ten segment items in this project's reads
    if api in _S3_PUTS:
        return S3_PER_PUT
    if api in _S3_GETS:
        return S3_PER_GET
    if api == "Publish":  # SNS
        return SNS_PER_PUBLISH
    raise ValueError(f"no price for the API {api!r}: add it to bench/costs.py")


def request_cost_usd(calls_by_api: Mapping[str, float]) -> float:
    """USD for the calls counted (by API), e.g. the calls per file: the file's request cost."""
    return math.fsum(count * call_price(api) for api, count in calls_by_api.items())


def instance_cost_per_file_usd(files_per_second: float, hourly_usd: float) -> float:
    """USD of instance time per file, at ``files_per_second`` on one instance kept busy."""
    if files_per_second <= 0:
        raise ValueError("the rate must be positive")
    return hourly_usd / (files_per_second * 3600)


@dataclass(frozen=True)
class Rates:
    """Measured rates of one worker (one instance): images per second, and seconds of video per second."""

    images_per_second: float | None = None
    video_seconds_per_second: float | None = None  # None: not measured (the table prints the formula)


def per_video_hour(calls_for_one_video: Mapping[str, float], video_seconds: float) -> dict[str, float]:
    """Calls per hour of video from the calls counted for one video of ``video_seconds`` (its S3 notification added)."""
    if video_seconds <= 0:
        raise ValueError("the video must have a length")
    return {api: count * 3600 / video_seconds for api, count in {**calls_for_one_video, **_added(calls_for_one_video)}.items()}


def cost_table(
    image_calls: Mapping[str, float] | None,
    rates: Rates,
    *,
    video_hour_calls: Mapping[str, float] | None = None,
    where: str = "the measured rate",
) -> str:
    """A Markdown table: request cost per 1,000 images and per video hour, instance cost of each at ``rates`` (a
    formula where a rate is not measured), and Rekognition's published prices beside them. ``image_calls``: calls
    per image by API (the S3 notification's SendMessage is added; None: not counted in this run, as
    ``bench/split_bench.py``); ``video_hour_calls``: calls per hour of video (None: not counted in this run)."""
    image_requests = (
        _usd(1000 * request_cost_usd({**image_calls, **_added(image_calls)})) if image_calls is not None else "(bench-throughput counts it)"
    )
    lambda_per_file = request_cost_usd(LAMBDA_CALLS_PER_FILE)  # once per file: per video, whatever its length
    video_requests = _usd(request_cost_usd(video_hour_calls)) if video_hour_calls is not None else "(bench-split counts it)"
    rows = [
        ("AWS requests (S3 notification included)", image_requests, video_requests),
        (
            "+ the deployed module's intake, router and claim calls (counted by tests/test_calls_per_file.py)",
            _usd(1000 * lambda_per_file),
            f"{_usd(1000 * lambda_per_file)} per 1,000 videos",
        ),
    ]
    for name, hourly in (("On-Demand", G4DN_XLARGE_ON_DEMAND), ("Spot", G4DN_XLARGE_SPOT)):
        images = (
            _usd(1000 * instance_cost_per_file_usd(rates.images_per_second, hourly))
            if rates.images_per_second
            else f"{hourly:.3f} / (3.6 x images/s)"
        )
        video = _usd(hourly / rates.video_seconds_per_second) if rates.video_seconds_per_second else f"{hourly:.3f} / (video s per s)"
        rows.append((f"g4dn.xlarge {name} (${hourly:.3f}/h) at {where}", images, video))
    rows.append(
        (
            "Rekognition, people + faces (2 APIs; Video: label + face detection)",
            _usd(2000 * REKOGNITION_IMAGE_PER_API),
            _usd(2 * 60 * REKOGNITION_VIDEO_PER_MINUTE_PER_API),
        )
    )
    lines = [
        f"cost, us-east-1 list prices ({PRICES_READ}; bench/costs.py names each page):",
        "| | per 1,000 images | per video hour |",
        "| --- | ---: | ---: |",
        *(f"| {name} | {images} | {video} |" for name, images, video in rows),
    ]
    return "\n".join(lines)


def _added(calls: Mapping[str, float]) -> dict[str, float]:
    return {api: calls.get(api, 0.0) + count for api, count in NOTIFICATION_CALLS.items()}


def _usd(value: float) -> str:
    return f"${value:.4f}" if value < 1 else f"${value:,.2f}"
