"""Entry point: configure from the environment, install signal handlers, run the loop."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Any

import boto3
from botocore.config import Config

from pipeline_core.jobstore import JobStore
from worker import logs
from worker.config import ConfigError, WorkerConfig
from worker.keepalive import TaskProtection
from worker.processors import load_processor
from worker.runtime import Worker


def main() -> int:
    logs.configure()
    log = logging.getLogger("worker")
    try:
        config = WorkerConfig.from_env()
        processor = load_processor(config.processor, config.processor_options, config.annotate)
        protection = TaskProtection(config.ecs_agent_uri, config.protection_minutes)
    except (ConfigError, ValueError, ImportError, AttributeError) as error:
        log.error("cannot start", extra={"reason": str(error)})
        return 2
    logs.configure(worker_id=config.worker_id)

    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    # The long poll must outlast its WaitTimeSeconds. Adaptive retries (backoff plus a client-side rate
    # limiter) ride out throttling and 5xx; what still fails is handled per call by the loop and lifecycle.
    # AWS_RETRY_MODE and AWS_MAX_ATTEMPTS, botocore's own settings, override the defaults.
    retries: Any = {  # botocore checks the mode
        "mode": os.environ.get("AWS_RETRY_MODE") or "adaptive",
        "total_max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS") or 8),
    }
    boto_config = Config(read_timeout=config.wait_time_seconds + 10, connect_timeout=5, retries=retries)
    session = boto3.session.Session()
    worker = Worker(
        config,
        sqs=session.client("sqs", config=boto_config),
        s3=session.client("s3", config=boto_config),
        store=JobStore(session.resource("dynamodb", config=boto_config).Table(config.jobs_table)),
        processor=processor,
        stop=stop,
        protection=protection,
    )
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
