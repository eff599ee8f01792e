"""The pipeline definition: its steps (a graph: ``pipeline_core.graph``), their queues, services and scaling policies.

Terraform renders it once as JSON into the ``PIPELINE_CONFIG_GZ`` environment
variable of the Lambdas, gzipped and base64-encoded to stay under Lambda's 4 KB
environment limit (``PIPELINE_CONFIG``, plain JSON, is read too: the local
runtime sets it), so the step list and queue names live in one place.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline_core.graph import Graph, GraphError


class PipelineConfigError(ValueError):
    """The pipeline definition is missing or inconsistent."""


@dataclass(frozen=True)
class ScalingPolicy:
    """How many tasks a step's backlog wants, and how fast capacity may fall.

    By default a step wants ``ceil(backlog / target_backlog_per_task)`` tasks.
    With a ``table`` (rows of ``(min backlog, tasks)``, the original guide's
    exact-capacity steps) a backlog of at least ``threshold`` messages wants
    ``tasks`` tasks instead. Either answer is bounded to [min_tasks, max_tasks].
    Capacity falls only after a lower count has been wanted continuously for
    ``scale_in_cooldown_seconds``, and to zero only after ``idle_seconds`` with
    no backlog at all (scaler/decision.py).

    The defaults below are the module's: terraform/variables.tf and the step
    module's variables.tf mirror them, and tests/test_one_source_of_defaults.py
    holds the two equal.
    """

    table: tuple[tuple[int, int], ...] | None = None
    target_backlog_per_task: float = 10
    min_tasks: int = 0
    max_tasks: int = 4
    idle_seconds: float = 180.0
    scale_in_cooldown_seconds: float = 300.0

    def __post_init__(self) -> None:
        if self.table is not None:
            thresholds = [threshold for threshold, _ in self.table]
            tasks = [count for _, count in self.table]
            if not self.table:
                raise PipelineConfigError("the scaling table needs at least one step")
            if thresholds != sorted(set(thresholds)) or thresholds[0] < 1:
                raise PipelineConfigError(f"scaling thresholds must be >= 1 and strictly increasing: {thresholds}")
            if tasks != sorted(tasks) or tasks[0] < 1:
                raise PipelineConfigError(f"scaling task counts must be >= 1 and non-decreasing: {tasks}")
        if not self.target_backlog_per_task >= 1:
            raise PipelineConfigError(f"target_backlog_per_task must be >= 1: {self.target_backlog_per_task}")
        if not 0 <= self.min_tasks <= self.max_tasks or self.max_tasks < 1:
            raise PipelineConfigError(f"need 0 <= min_tasks ({self.min_tasks}) <= max_tasks ({self.max_tasks}) and max_tasks >= 1")
        if self.idle_seconds < 0:
            raise PipelineConfigError("idle_seconds must be >= 0")
        if self.scale_in_cooldown_seconds < 0:
            raise PipelineConfigError("scale_in_cooldown_seconds must be >= 0")

    @property
    def name(self) -> str:
        return "scaling_table" if self.table is not None else "backlog_per_task"

    def tasks_for(self, backlog: int) -> int:
        """Tasks a backlog wants, before the [min, max] bounds: 0 for no backlog."""
        if backlog <= 0:
            return 0
        if self.table is None:
            return math.ceil(backlog / self.target_backlog_per_task)
        wanted = 0
        for threshold, tasks in self.table:
            if backlog >= threshold:
                wanted = tasks
        return wanted

    def describe(self) -> str:
        if self.table is None:
            return f"{self.target_backlog_per_task:g} per task"
        return f"table {[list(row) for row in self.table]}"

    @classmethod
    def from_dict(cls, step: Mapping[str, Any]) -> ScalingPolicy:
        """A step's scaling fields as Terraform renders them; absent or null means the default."""

        def get(name: str) -> Any:
            value = step.get(name)
            return getattr(DEFAULT_SCALING, name) if value is None else value

        table = step.get("scaling_table")
        return cls(
            table=None if table is None else tuple((int(t), int(n)) for t, n in table),
            target_backlog_per_task=float(get("target_backlog_per_task")),
            min_tasks=int(get("min_tasks")),
            max_tasks=int(get("max_tasks")),
            idle_seconds=float(get("idle_seconds")),
            scale_in_cooldown_seconds=float(get("scale_in_cooldown_seconds")),
        )


DEFAULT_SCALING = ScalingPolicy()  # the module's default; terraform/variables.tf mirrors it


@dataclass(frozen=True)
class StepConfig:
    name: str
    queue_url: str
    after: tuple[str, ...] | None = None  # the steps whose results it reads; None: the step before it in the list
    service: str = ""
    scaling: ScalingPolicy = field(default_factory=ScalingPolicy)
    # The step queue's dead-letter queue, and the receives after which SQS moves a message there.
    dlq_url: str = ""
    dlq_arn: str = ""
    max_receive_count: int = 0


@dataclass(frozen=True)
class PipelineConfig:
    steps: tuple[StepConfig, ...]
    jobs_table: str
    cluster: str = ""
    scaler_state_table: str = ""
    input_prefix: str = ""
    allowed_suffixes: tuple[str, ...] = ()
    scaler_function: str = ""
    notify_topic_arn: str = ""
    task_protection_api: bool = True
    graph: Graph = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        try:
            graph = Graph.of([(step.name, step.after) for step in self.steps])
        except GraphError as error:
            raise PipelineConfigError(str(error)) from None
        object.__setattr__(self, "graph", graph)

    @property
    def step_names(self) -> list[str]:
        return [step.name for step in self.steps]

    def step(self, name: str) -> StepConfig:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(f"no step named {name!r}; steps are {self.step_names}")

    def step_for_dead_letter_queue(self, queue_arn: str) -> StepConfig | None:
        """The step whose dead-letter queue has this ARN, or None."""
        return next((step for step in self.steps if step.dlq_arn and step.dlq_arn == queue_arn), None)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PipelineConfig:
        try:
            steps = tuple(
                StepConfig(
                    name=step["name"],
                    queue_url=step["queue_url"],
                    after=None if step.get("after") is None else tuple(step["after"]),
                    service=step.get("service", ""),
                    scaling=ScalingPolicy.from_dict(step),
                    dlq_url=step.get("dlq_url", ""),
                    dlq_arn=step.get("dlq_arn", ""),
                    max_receive_count=int(step.get("max_receive_count", 0)),
                )
                for step in data["steps"]
            )
            return cls(
                steps=steps,
                jobs_table=data["jobs_table"],
                cluster=data.get("cluster", ""),
                scaler_state_table=data.get("scaler_state_table", ""),
                input_prefix=data.get("input_prefix", ""),
                allowed_suffixes=tuple(suffix.lower() for suffix in data.get("allowed_suffixes", ())),
                scaler_function=data.get("scaler_function", ""),
                notify_topic_arn=data.get("notify_topic_arn", ""),
                task_protection_api=bool(data.get("task_protection_api", True)),
            )
        except (KeyError, TypeError, ValueError) as error:
            if isinstance(error, PipelineConfigError):
                raise
            raise PipelineConfigError(f"invalid pipeline definition: {error!r}") from None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PipelineConfig:
        env = os.environ if env is None else env
        raw = env.get("PIPELINE_CONFIG")
        packed = env.get("PIPELINE_CONFIG_GZ")
        if packed and not raw:
            try:
                raw = gzip.decompress(base64.b64decode(packed, validate=True)).decode()
            except (binascii.Error, OSError, EOFError, UnicodeDecodeError) as error:
                raise PipelineConfigError(f"PIPELINE_CONFIG_GZ is not base64-encoded gzip: {error}") from None
        if not raw:
            raise PipelineConfigError("PIPELINE_CONFIG (or PIPELINE_CONFIG_GZ) is not set")
        try:
            return cls.from_dict(json.loads(raw))
        except json.JSONDecodeError as error:
            raise PipelineConfigError(f"PIPELINE_CONFIG is not JSON: {error}") from None
