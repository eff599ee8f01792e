"""The pipeline definition in the Lambdas' environment: gzipped and base64-encoded (Terraform's
base64gzip) to stay under Lambda's 4 KB limit, read back as the same definition; a damaged one is a clear error."""

from __future__ import annotations

import base64
import gzip
import json

import pytest

from pipeline_core.pipeline import PipelineConfig, PipelineConfigError

pytestmark = pytest.mark.unit

DEFINITION = {
    "steps": [
        {"name": f"step-{n}", "queue_url": f"https://sqs.eu-west-1.amazonaws.com/123456789012/p-step-{n}", "service": f"p-step-{n}"}
        for n in range(12)
    ],
    "jobs_table": "p-jobs",
    "cluster": "p",
}


def test_the_gzipped_definition_reads_as_the_plain_one() -> None:
    packed = base64.b64encode(gzip.compress(json.dumps(DEFINITION).encode())).decode()
    assert PipelineConfig.from_env({"PIPELINE_CONFIG_GZ": packed}) == PipelineConfig.from_env({"PIPELINE_CONFIG": json.dumps(DEFINITION)})
    assert len(packed) < len(json.dumps(DEFINITION)) / 3


def test_a_damaged_gzipped_definition_is_a_clear_error() -> None:
    with pytest.raises(PipelineConfigError, match="PIPELINE_CONFIG_GZ"):
        PipelineConfig.from_env({"PIPELINE_CONFIG_GZ": "not base64!"})
    with pytest.raises(PipelineConfigError, match="not set"):
        PipelineConfig.from_env({})
