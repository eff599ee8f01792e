"""Shared fixtures: one moto server for the session, a fresh step stack per test; every test's tier checked."""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from local_runtime.emulator import Emulator
from tests.support.aws import CREDENTIALS, REGION, StepStack
from tests.support.faultproxy import FaultProxy, fault_proxy
from tests.support.stack import Terraform
from tests.support.workers import WorkerProcess
from tools.package_lambdas import build

# The tiers, fastest first (pyproject.toml describes each). `make test-fast` runs `unit`.
TIERS = ("unit", "integration", "workers", "e2e")
# What a tier may not ask for: a unit test that starts the emulator, or an integration test that starts
# worker processes or applies Terraform, is in the wrong tier.
FIXTURES_ABOVE = {
    "unit": {"moto_endpoint", "stack", "proxy", "spawn", "local_stack"},
    "integration": {"spawn", "local_stack"},
    "workers": {"local_stack"},
    "e2e": set(),
}


def tier_problem(tiers: list[str], fixtures: set[str]) -> str | None:
    """Why a test's tier markers are wrong (None when it has exactly one that fits the fixtures it uses)."""
    if len(tiers) != 1:
        return f"has tier markers {tiers or 'none'}; give it exactly one of {', '.join(TIERS)} (a module-level pytestmark)"
    (tier,) = tiers
    above = sorted(FIXTURES_ABOVE[tier] & fixtures)
    if above:
        return f"is marked {tier} but uses {', '.join(above)}: mark it with the tier those need"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wrong = []
    for item in items:
        tiers = [mark.name for mark in item.iter_markers() if mark.name in TIERS]
        problem = tier_problem(tiers, set(getattr(item, "fixturenames", ())))
        if problem:
            wrong.append(f"{item.nodeid} {problem}")
        if "local_stack" in getattr(item, "fixturenames", ()):
            # Under pytest-xdist (--dist loadgroup), every test of the applied stack runs in one process: one apply.
            item.add_marker(pytest.mark.xdist_group("local_stack"))
    if wrong:
        raise pytest.UsageError("tests without exactly one fitting tier:\n  " + "\n  ".join(wrong))


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    for name, value in CREDENTIALS.items():
        os.environ.setdefault(name, value)
    # Terraform attaches AWS-managed policies (the ECS instance role); moto serves them only when asked.
    os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with Emulator() as endpoint:  # moto, with DynamoDB's item atomicity
        yield endpoint


@pytest.fixture
def stack(moto_endpoint: str) -> StepStack:
    return StepStack.create(moto_endpoint)


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the session's moto server (rules start empty)."""
    with fault_proxy(moto_endpoint) as faults:
        yield faults


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator:
    """Start real worker processes; every one is stopped at the end of the test."""
    started: list[WorkerProcess] = []

    def start(env: dict[str, str], name: str | None = None) -> WorkerProcess:
        worker = WorkerProcess(env, tmp_path / f"{name or f'worker-{len(started)}'}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session")
def local_stack(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Terraform, dict[str, Any], dict[str, Any]]]:
    """terraform/examples/local applied once per session; destroyed, and the destroy checked, at its end."""
    assert shutil.which("terraform"), "Terraform 1.5+ is required for this test (see README prerequisites)"
    workdir = tmp_path_factory.mktemp("tf-local")
    zips = workdir / "lambda"
    build(zips)
    name = f"tf{uuid.uuid4().hex[:6]}"
    # Short idle period and visibility timeout, so scaling to zero and redelivery happen within a test.
    variables = {"endpoint": moto_endpoint, "name": name, "lambda_zip_dir": str(zips), "idle_seconds": "8", "visibility_timeout": "10"}
    terraform = Terraform(workdir, variables)
    terraform.run("init", "-backend=false", "-input=false")
    started = time.monotonic()
    terraform.run("apply", "-auto-approve", "-input=false")
    print(f"\napply against moto took {time.monotonic() - started:.0f}s")
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    aws = {
        service: session.client(service, endpoint_url=moto_endpoint) for service in ("s3", "sqs", "ecs", "iam", "lambda", "ec2", "dynamodb")
    }
    outputs = terraform.outputs()
    # Other tests run work through this stack; what it looked like fresh is kept for those that ask.
    fresh_desired = {
        step: aws["ecs"].describe_services(cluster=outputs["cluster_name"], services=[spec["service_name"]])["services"][0]["desiredCount"]
        for step, spec in outputs["steps"].items()
    }
    yield terraform, outputs, aws | {"name": name, "workdir": workdir, "fresh_desired": fresh_desired}
    started = time.monotonic()
    terraform.run("destroy", "-auto-approve", "-input=false")
    print(f"destroy against moto took {time.monotonic() - started:.0f}s")
    buckets = [bucket["Name"] for bucket in aws["s3"].list_buckets()["Buckets"]]
    assert not [bucket for bucket in buckets if bucket.startswith(name)], "destroy left the bucket behind"
    assert name + "-jobs" not in aws["dynamodb"].list_tables()["TableNames"]
