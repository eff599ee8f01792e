"""``gpupipe doctor`` / ``make preflight``: the quota arithmetic as pure functions, then every check run
read-only against the emulator, where a call moto lacks is reported as a check that could not run."""

from __future__ import annotations

import json

import boto3
import pytest

from gpupipe import doctor
from gpupipe.cli import main as gpupipe

G4 = {"g4dn.xlarge": 4, "g5.xlarge": 4, "g5.2xlarge": 8, "c6i.xlarge": 4, "p3.2xlarge": 8}


@pytest.mark.unit
def test_instance_types_draw_on_their_quota_class() -> None:
    assert [doctor.quota_class(t) for t in ("g4dn.xlarge", "vt1.3xlarge", "p4d.24xlarge", "c6i.large", "m7i.xlarge", "inf2.xlarge")] == [
        "G and VT",
        "G and VT",
        "P",
        "Standard",
        "Standard",
        None,
    ]


@pytest.mark.unit
def test_the_steps_need_max_tasks_times_their_largest_instance_per_quota() -> None:
    steps = {
        "people": {"instance_types": ["g4dn.xlarge", "g5.2xlarge"], "max_tasks": 4, "spot": False},
        "faces": {"instance_types": ["g4dn.xlarge"], "max_tasks": 2, "spot": True},
        "hog": {"instance_types": ["c6i.xlarge"], "max_tasks": 2, "spot": True},
    }
    assert doctor.vcpus_needed(steps, G4) == {("G and VT", False): 32, ("G and VT", True): 8, ("Standard", True): 8}


@pytest.mark.unit
def test_a_quota_below_the_need_is_missing_and_says_what_to_request() -> None:
    check = doctor.quota_check("G and VT", False, 8.0, 32)
    assert check.status == doctor.MISSING and "L-DB2E81BA" in check.fix and "--desired-value 32" in check.fix
    assert doctor.quota_check("G and VT", True, 64.0, 8).status == doctor.OK
    assert doctor.quota_check("G and VT", False, None, 8).status == doctor.NOT_RUN
    assert doctor.quota_check("G and VT", False, 0.0, None).status == doctor.WARNING, "a new account's 0 vCPUs, before apply"


@pytest.mark.unit
def test_subscriptions_pending_confirmation_are_a_warning_with_what_to_do() -> None:
    pending = doctor.subscription_check("alarms", "arn:aws:sns:x", [{"SubscriptionArn": "PendingConfirmation"}], "alarm_emails")
    assert pending.status == doctor.WARNING and "click" in pending.fix
    assert doctor.subscription_check("alarms", None, None, "alarm_emails").fix.startswith("set alarm_emails")
    confirmed = [{"SubscriptionArn": "arn:aws:sns:x:1", "Endpoint": "a@b.c"}]
    assert doctor.subscription_check("alarms", "arn:aws:sns:x", confirmed, "alarm_emails").status == doctor.OK


@pytest.mark.integration
def test_every_check_runs_against_the_emulator_and_says_what_is_missing(moto_endpoint, monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    session = boto3.session.Session(region_name="us-east-1")
    repository = session.client("ecr").create_repository(repositoryName="doc-worker")["repository"]["repositoryUri"]
    session.client("s3").create_bucket(Bucket="doc-media")
    session.client("s3").put_object(Bucket="doc-media", Key="models/present/saved_model.pb", Body=b"x")
    topic = session.client("sns").create_topic(Name="doc-jobs")["TopicArn"]
    ami = session.client("ec2").describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    preflight = {
        "ecr_repository_url": repository,
        "jobs_topic_arn": topic,
        "alarm_topic_arn": None,
        "kms_key_arn": None,
        "create_capacity": True,
        "steps": {
            "people": {
                "image": f"{repository}:abc1234",
                "ami_id": ami,
                "instance_types": ["g4dn.xlarge"],
                "spot": False,
                "max_tasks": 4,
                "gpus": 1,
                "models": ["absent"],
            },
            "hog": {
                "image": "public.ecr.aws/x/y:1",
                "ami_id": ami,
                "instance_types": ["c6i.xlarge"],
                "spot": True,
                "max_tasks": 2,
                "gpus": 0,
                "models": ["present"],
            },
        },
    }
    outputs = {
        "preflight": preflight,
        "bucket_name": "doc-media",
        "models_prefix": "models/",
        "region": "us-east-1",
        **{"input_prefix": "uploads/", "results_prefix": "results/", "jobs_table_name": "doc-jobs"},
    }
    checks = {check.name: check for check in doctor.run_checks(session, outputs)}
    assert checks["credentials"].status == doctor.OK
    assert checks[f"image {repository}:abc1234"].status == doctor.MISSING and "make image" in checks[f"image {repository}:abc1234"].fix
    assert (
        checks["model absent (steps people)"].status == doctor.MISSING
        and checks["model absent (steps people)"].fix == "make model MODEL=absent"
    )
    assert checks["model present (steps hog)"].status == doctor.OK
    assert checks["job notifications"].status == doctor.WARNING and checks["alarms"].fix.startswith("set alarm_emails")
    quotas = [check for name, check in checks.items() if name.startswith("quota ")]
    assert quotas and all(check.status in (doctor.OK, doctor.MISSING, doctor.NOT_RUN) for check in quotas)
    # The command prints every check and fails while something is missing.
    outputs_file = tmp_path / "outputs.json"
    outputs_file.write_text(json.dumps(outputs))
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    assert gpupipe(["--outputs", str(outputs_file), "doctor"]) == 1
    printed = capsys.readouterr().out
    assert all(name in printed for name in checks) and "-> make model MODEL=absent" in printed


@pytest.mark.integration
def test_before_the_first_apply_it_checks_the_account_only(moto_endpoint, monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    assert gpupipe(["--outputs", str(tmp_path / "none.json"), "doctor"]) == 0
    printed = capsys.readouterr().out
    assert "credentials" in printed and "Running On-Demand G and VT instances" in printed and "apply first" in printed
