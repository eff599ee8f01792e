"""Entry point: configure from the environment, install signal handlers, run the loop.

A start-up that fails (a broken setting, a model not uploaded yet or unreadable, no access) is one log line,
``cannot start`` with the reason and what to do, then a back-off of ``STARTUP_BACKOFF_SECONDS`` (default 300)
before the process exits: ECS restarts a task whose container exits, and without the wait a task on a paid
GPU instance would restart in a tight loop. The step's log group counts the line (a metric filter) and an
alarm fires on it (terraform/modules/step, modules/observability).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

import boto3
from botocore.config import Config

from pipeline_core.jobstore import JobStore
from worker import logs
from worker.config import ConfigError, WorkerConfig
from worker.keepalive import TaskProtection
from worker.models import local_models
from worker.processing import Processor
from worker.registry import load_processor
from worker.runtime import Worker

DEFAULT_STARTUP_BACKOFF_SECONDS = 300.0
MODEL_URI = re.compile(r"s3://[^/\s]+/models/([^/\s]+)")


def startup_hint(error: BaseException) -> str:
    """What to do about a start-up failure, in one sentence."""
    text = str(error)
    model = MODEL_URI.search(text)
    if model and isinstance(error, FileNotFoundError):
        return f"upload the model first: make model MODEL={model[1]} (README, 'Upload the models')"
    if isinstance(error, ConfigError):
        return "fix the step's settings (steps[].environment, processor_options) in Terraform and apply again"
    if isinstance(error, (ImportError, AttributeError)):
        return "the processor or plugin named by PROCESSOR is not in the image: rebuild it (make image) or fix steps[].processor"
    if "AccessDenied" in text or "Forbidden" in text or "403" in text:
        return "the task role may not read it: check the key policy and the models/ prefix (make preflight)"
    if "model" in text.lower() or "savedmodel" in text.lower():
        return "the model is missing or unreadable: upload it again with make model MODEL=<name> (make preflight lists the models)"
    return "see the reason; the task exits after the back-off and ECS starts it again"


def startup_backoff(env: Mapping[str, str]) -> float:
    try:
        return max(0.0, float(env.get("STARTUP_BACKOFF_SECONDS") or DEFAULT_STARTUP_BACKOFF_SECONDS))
    except ValueError:
        return DEFAULT_STARTUP_BACKOFF_SECONDS


def cannot_start(error: BaseException, env: Mapping[str, str], wait: Callable[[float], object]) -> int:
    """Log the failure once, without a traceback, and wait before exiting so that ECS does not restart the task at once."""
    backoff = startup_backoff(env)
    logging.getLogger("worker").error(
        "cannot start",
        extra={
            "step": env.get("STEP_NAME", ""),
            "reason": f"{type(error).__name__}: {error}",
            "hint": startup_hint(error),
            "backoff_seconds": backoff,
        },
    )
    wait(backoff)
    return 2


def build_worker(config: WorkerConfig, processor: Processor, protection: TaskProtection, stop: threading.Event) -> Worker:
    # The long poll must outlast its WaitTimeSeconds. Adaptive retries (backoff plus a client-side rate
    # limiter) ride out throttling and 5xx; what still fails is handled per call by the loop and lifecycle.
    # AWS_RETRY_MODE and AWS_MAX_ATTEMPTS, botocore's own settings, override the defaults.
    retries: Any = {  # botocore checks the mode
        "mode": os.environ.get("AWS_RETRY_MODE") or "adaptive",
        "total_max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS") or 8),
    }
    boto_config = Config(read_timeout=config.wait_time_seconds + 10, connect_timeout=5, retries=retries)
    session = boto3.session.Session()
    return Worker(
        config,
        sqs=session.client("sqs", config=boto_config),
        s3=session.client("s3", config=boto_config),
        store=JobStore(session.resource("dynamodb", config=boto_config).Table(config.jobs_table)),
        processor=processor,
        stop=stop,
        protection=protection,
    )


def main(wait: Callable[[float], object] | None = None) -> int:
    logs.configure()
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        config = WorkerConfig.from_env()
        processor = load_processor(config.processor, local_models(config.processor_options), config.annotate)
        protection = TaskProtection(config.ecs_agent_uri, config.protection_minutes)
        worker = build_worker(config, processor, protection, stop)
    except Exception as error:  # noqa: BLE001 - every start-up failure: one clear line and a back-off, never a crash loop
        return cannot_start(error, os.environ, wait or stop.wait)
    logs.configure(worker_id=config.worker_id)
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
