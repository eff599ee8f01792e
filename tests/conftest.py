"""Shared fixtures: one moto server for the session, a fresh step stack per test."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from tests.support.aws import CREDENTIALS, StepStack, free_port
from tests.support.workers import WorkerProcess


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    for name, value in CREDENTIALS.items():
        os.environ.setdefault(name, value)
    # Terraform attaches AWS-managed policies (the ECS instance role); moto serves them only when asked.
    os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def stack(moto_endpoint: str) -> StepStack:
    return StepStack.create(moto_endpoint)


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
