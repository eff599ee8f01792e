"""Worker settings, read once from the environment (the ECS task definition sets them)."""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline_core.segment_plan import DEFAULT_SEGMENT_SECONDS, MIN_SEGMENT_SECONDS

DEFAULT_CONCURRENCY = 8  # messages in flight per worker; terraform/variables.tf `concurrency` mirrors it
# A task works on at most this many segments at once (its GPU is the limit: two keep it busy while the next
# downloads), and receives nothing more until one finishes: the rest are for other tasks.
DEFAULT_SEGMENTS_IN_FLIGHT = 2
SQS_MAX_VISIBILITY = 43200  # a message cannot stay invisible longer than 12 hours from its receive


class ConfigError(ValueError):
    """A missing or malformed setting: the worker refuses to start."""


@dataclass(frozen=True)
class WorkerConfig:
    queue_url: str
    jobs_table: str
    step_name: str
    results_bucket: str
    results_prefix: str = "results/"
    processor: str = "media-info"
    processor_options: Mapping[str, Any] = field(default_factory=dict)
    visibility_timeout: int = 300
    heartbeat_seconds: float = 100.0
    concurrency: int = DEFAULT_CONCURRENCY
    max_attempts: int = 3
    step_timeout_seconds: float = 3600.0
    grace_seconds: float = 25.0
    wait_time_seconds: int = 20
    retry_delay_seconds: int = 10
    max_file_bytes: int = 5 * 1024**3
    protection_minutes: int = 60
    ecs_agent_uri: str | None = None
    worker_id: str = ""
    segment_seconds: float = DEFAULT_SEGMENT_SECONDS  # videos longer than this (plus a margin) are split; 0: never
    segments_in_flight: int = DEFAULT_SEGMENTS_IN_FLIGHT  # segment messages one worker works on at once; more go to other tasks
    annotate: bool = False  # also write the annotated image or video (worker/annotate.py); Terraform's step `annotate`

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerConfig:
        env = os.environ if env is None else env
        missing = [name for name in ("QUEUE_URL", "JOBS_TABLE", "STEP_NAME", "RESULTS_BUCKET") if not env.get(name)]
        if missing:
            raise ConfigError(f"missing required environment variables: {', '.join(missing)}")
        visibility = _int(env, "VISIBILITY_TIMEOUT", 300, minimum=2, maximum=43200)
        config = cls(
            queue_url=env["QUEUE_URL"],
            jobs_table=env["JOBS_TABLE"],
            step_name=env["STEP_NAME"],
            results_bucket=env["RESULTS_BUCKET"],
            results_prefix=_prefix(env.get("RESULTS_PREFIX", "results/")),
            processor=env.get("PROCESSOR", "media-info"),
            processor_options=_json_object(env, "PROCESSOR_OPTIONS"),
            visibility_timeout=visibility,
            heartbeat_seconds=_float(env, "HEARTBEAT_SECONDS", visibility / 3, minimum=0.5),
            concurrency=_int(env, "CONCURRENCY", DEFAULT_CONCURRENCY, minimum=1, maximum=64),
            max_attempts=_int(env, "MAX_ATTEMPTS", 3, minimum=1, maximum=100),
            step_timeout_seconds=_float(env, "STEP_TIMEOUT_SECONDS", 3600.0, minimum=1.0, maximum=SQS_MAX_VISIBILITY - visibility),
            grace_seconds=_float(env, "GRACE_SECONDS", 25.0, minimum=0.0),
            wait_time_seconds=_int(env, "WAIT_TIME_SECONDS", 20, minimum=0, maximum=20),
            retry_delay_seconds=_int(env, "RETRY_DELAY_SECONDS", 10, minimum=0, maximum=900),
            max_file_bytes=_int(env, "MAX_FILE_BYTES", 5 * 1024**3, minimum=1),
            protection_minutes=_int(env, "PROTECTION_MINUTES", 60, minimum=1, maximum=2880),
            ecs_agent_uri=env.get("ECS_AGENT_URI") or None,
            worker_id=env.get("WORKER_ID") or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            segment_seconds=_float(env, "SEGMENT_SECONDS", DEFAULT_SEGMENT_SECONDS, minimum=0.0),
            segments_in_flight=_int(env, "SEGMENTS_IN_FLIGHT", DEFAULT_SEGMENTS_IN_FLIGHT, minimum=1, maximum=64),
            annotate=_bool(env, "ANNOTATE"),
        )
        if 0 < config.segment_seconds < MIN_SEGMENT_SECONDS:
            raise ConfigError(
                f"SEGMENT_SECONDS must be 0 (never split) or at least {MIN_SEGMENT_SECONDS:g}, got {config.segment_seconds:g}"
            )
        if config.heartbeat_seconds >= config.visibility_timeout:
            raise ConfigError(
                f"HEARTBEAT_SECONDS ({config.heartbeat_seconds}) must be shorter than VISIBILITY_TIMEOUT ({config.visibility_timeout})"
            )
        return config


def _prefix(value: str) -> str:
    value = value.lstrip("/")
    return value if not value or value.endswith("/") else value + "/"


def _number(env: Mapping[str, str], name: str, default: float, kind: type, minimum: float | None, maximum: float | None) -> Any:
    raw = env.get(name)
    if raw in (None, ""):
        return kind(default)
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a{'n integer' if kind is int else ' number'}, got {raw!r}") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int:
    return _number(env, name, default, int, minimum, maximum)


def _float(env: Mapping[str, str], name: str, default: float, minimum: float | None = None, maximum: float | None = None) -> float:
    return _number(env, name, default, float, minimum, maximum)


def _bool(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw not in ("true", "false", "1", "0"):
        raise ConfigError(f"{name} must be true or false, got {env.get(name)!r}")
    return raw in ("true", "1")


def _json_object(env: Mapping[str, str], name: str) -> dict[str, Any]:
    raw = env.get(name) or "{}"
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{name} must be a JSON object: {error}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a JSON object, got {type(value).__name__}")
    return value
