"""What the Lambdas create once per container: the pipeline definition and AWS clients.

``reset()`` forgets them, for callers that change the environment (tests, the local runtime).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3

from pipeline_core.pipeline import PipelineConfig


@cache
def pipeline() -> PipelineConfig:
    return PipelineConfig.from_env()


@cache
def client(service: str) -> Any:
    make: Any = boto3.client  # typed per literal service name by the stubs; this takes any name
    return make(service)


@cache
def table(name: str) -> Any:
    return boto3.resource("dynamodb").Table(name)


def reset() -> None:
    for cached in (pipeline, client, table):
        cached.cache_clear()
