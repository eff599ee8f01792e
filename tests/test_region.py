"""One region from one place (gpupipe/region.py): after an apply the stack's region output wins over AWS_REGION,
before one the example's region variable does, and a disagreement is named in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import boto3
import pytest

from gpupipe import doctor
from gpupipe.cli import main as gpupipe
from gpupipe.region import Region, choose, planned_region


@pytest.mark.unit
def test_the_stacks_region_output_wins_over_the_environment_and_the_mismatch_is_named() -> None:
    region = choose("eu-west-1", None, {"AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-west-2"})
    assert region == Region("eu-west-1", "the stack's region output", "the stack is in eu-west-1, AWS_REGION says us-east-1")
    assert choose("eu-west-1", "ap-south-1", {"AWS_DEFAULT_REGION": "eu-west-1"}).mismatch is None


@pytest.mark.unit
def test_before_an_apply_the_examples_variable_wins_and_otherwise_the_providers_order() -> None:
    before = choose(None, "eu-west-1", {"AWS_DEFAULT_REGION": "us-east-1"})
    assert (before.name, before.mismatch) == (
        "eu-west-1",
        "the example deploys to eu-west-1 (its region variable), AWS_DEFAULT_REGION says us-east-1",
    )
    # The provider reads AWS_REGION before AWS_DEFAULT_REGION; botocore reads only the second, so gpupipe passes it on.
    assert choose(None, None, {"AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-west-2"}) == Region("us-east-1", "AWS_REGION")
    assert choose(None, None, {}).name is None


@pytest.mark.unit
def test_doctor_warns_of_the_mismatch_and_says_how_to_agree() -> None:
    check = doctor.region_check(choose("eu-west-1", None, {"AWS_REGION": "us-east-1"}))
    assert (check.status, check.detail) == (doctor.WARNING, "the stack is in eu-west-1, AWS_REGION says us-east-1")
    assert "export AWS_REGION=eu-west-1" in check.fix
    assert doctor.region_check(choose("eu-west-1", None, {})).status == doctor.OK


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("terraform") is None, reason="needs terraform")
def test_the_planned_region_is_the_variable_as_terraform_reads_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "main.tf").write_text('variable "region" {\n  type    = string\n  default = null\n}\n')
    assert planned_region(str(tmp_path)) is None
    (tmp_path / "terraform.tfvars").write_text('region = "eu-west-1"\n')
    assert planned_region(str(tmp_path)) == "eu-west-1"
    monkeypatch.setenv("TF_VAR_region", "ap-south-1")
    (tmp_path / "terraform.tfvars").unlink()
    assert planned_region(str(tmp_path)) == "ap-south-1"
    assert planned_region(str(tmp_path / "absent")) is None


@pytest.mark.integration
def test_gpupipe_reads_the_stack_in_its_own_region_whatever_aws_region_says(
    moto_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    kw = {"endpoint_url": moto_endpoint, "region_name": "eu-west-1"}
    boto3.client("dynamodb", **kw).create_table(
        TableName="jobs-in-ireland",
        KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    outputs = tmp_path / "outputs.json"
    stack = {"bucket_name": "b", "input_prefix": "uploads/", "results_prefix": "results/", "jobs_table_name": "jobs-in-ireland"}
    outputs.write_text(json.dumps({**stack, "region": "eu-west-1"}))
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # gpupipe sets the default session: restored after the test
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert gpupipe(["--outputs", str(outputs), "status"]) == 0
    assert "the stack is in eu-west-1, AWS_REGION says us-east-1" in capsys.readouterr().err
