"""The scaler Lambda: every minute, and when the router wakes it for a step.

Reads each step's queue attributes directly (CloudWatch's SQS metrics lag by
minutes), the ECS service and its protected tasks, applies ``decide`` and sets
the service's desired count. The capacity provider's managed scaling follows
with instances, and its managed termination protection keeps instances that
run tasks, so scale-in removes only idle capacity.

Each step is read, decided and set in its own ``try``: a failure (a missing
service, a throttled or denied call) is logged with the step and its reason and
counted in the ``ScalerStepErrors`` metric, and the other steps are scaled
regardless. The step's state (idle and cooldown clocks) is written with a
condition on the version that was read, before the service is set: when two
runs overlap (woken and scheduled), the one that writes second changes nothing,
so neither undoes the other.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline_core import aws
from pipeline_core.dynamo.expressions import ROOT, Value
from pipeline_core.dynamo.table import ConditionFailed, Table
from pipeline_core.pipeline import StepConfig
from scaler.decision import Decision, Observation, State, decide

logger = Logger()  # service name from POWERTOOLS_SERVICE_NAME ("scaler"), as the dashboard expects
metrics = Metrics(namespace="GpuPipeline")

QUEUE_ATTRIBUTES = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"]


class ServiceNotFound(LookupError):
    """The step's ECS service is missing or inactive."""


def state_table() -> Any:
    return aws.table(aws.pipeline().scaler_state_table)


def load_state(step: str) -> tuple[State, int]:
    """The step's last state and the version it was written at (0: never written)."""
    item = Table(state_table()).get({"step": step}) or {}
    state = State(idle_since=item.get("idle_since"), below_since=item.get("below_since"), peak=int(item.get("peak", 0)))
    return state, int(item.get("version", 0))


def save_state(step: str, decision: Decision, version: int, now: float) -> bool:
    """Write the decision's state if nobody wrote since ``version`` was read; False when another run did."""
    item = {"step": step, "version": version + 1, "desired": decision.desired, "reason": decision.reason, "updated_at": now}
    item |= {name: value for name, value in vars(decision.state).items() if value is not None}
    # Version 0: no item yet, or one the scaler wrote before it versioned its state.
    written = ROOT / "version"
    try:
        Table(state_table()).put(item, written.eq(Value("read", version)) if version else written.missing())
    except ConditionFailed:
        return False
    return True


def describe_service(step: StepConfig) -> dict[str, Any]:
    config = aws.pipeline()
    response = aws.client("ecs").describe_services(cluster=config.cluster, services=[step.service])
    services = [s for s in response.get("services", []) if s.get("status") == "ACTIVE"]
    if not services:
        failures = [f.get("reason", "?") for f in response.get("failures", [])]
        inactive = [s.get("status", "?") for s in response.get("services", [])]
        why = ", ".join(failures + inactive) or "none"
        raise ServiceNotFound(f"service {step.service!r} not found in cluster {config.cluster!r}: {why}")
    service: dict[str, Any] = services[0]
    return service


def observe(step: StepConfig, now: float, just_sent: int = 0) -> Observation:
    config = aws.pipeline()
    attrs = aws.client("sqs").get_queue_attributes(QueueUrl=step.queue_url, AttributeNames=QUEUE_ATTRIBUTES)["Attributes"]
    ecs = aws.client("ecs")
    service = describe_service(step)
    protected = 0
    if config.task_protection_api and service["runningCount"]:
        tasks = ecs.list_tasks(cluster=config.cluster, serviceName=step.service, desiredStatus="RUNNING")["taskArns"]
        for start in range(0, len(tasks), 10):  # GetTaskProtection takes at most 10 tasks
            found = ecs.get_task_protection(cluster=config.cluster, tasks=tasks[start : start + 10])["protectedTasks"]
            protected += sum(1 for task in found if task.get("protectionEnabled"))
    return Observation(
        visible=int(attrs["ApproximateNumberOfMessages"]),
        in_flight=int(attrs["ApproximateNumberOfMessagesNotVisible"]),
        delayed=int(attrs["ApproximateNumberOfMessagesDelayed"]),
        running=int(service["runningCount"]),
        pending=int(service["pendingCount"]),
        desired=int(service["desiredCount"]),
        protected=protected,
        now=now,
        just_sent=just_sent,
    )


def scale_step(step: StepConfig, now: float, just_sent: int = 0) -> dict[str, Any]:
    """Observe, decide, record the state conditionally, then set the service (only if the record went in)."""
    state, version = load_state(step.name)
    obs = observe(step, now, just_sent)
    decision = decide(obs, step.scaling, state)
    fields = {"step": step.name, "backlog": obs.backlog, "busy": obs.busy, "from": obs.desired, "to": decision.desired}
    if not save_state(step.name, decision, version, now):
        reason = "another scaler run decided this step meanwhile: its decision stands"
        logger.info(reason, extra={**fields, "changed": False})
        return {**fields, "to": obs.desired, "reason": reason, "changed": False, "superseded": True}
    changed = decision.desired != obs.desired
    if changed:
        aws.client("ecs").update_service(cluster=aws.pipeline().cluster, service=step.service, desiredCount=decision.desired)
    publish(step.name, obs, decision)
    logger.info(decision.reason, extra={**fields, "changed": changed})
    return {**fields, "reason": decision.reason, "changed": changed}


def publish(step: str, obs: Observation, decision: Decision) -> None:
    """Inputs and decision as CloudWatch metrics in embedded metric format, one document per step."""
    values = {
        "Backlog": obs.backlog,
        "VisibleMessages": obs.visible,
        "InFlightMessages": obs.in_flight,
        "RunningTasks": obs.running,
        "PendingTasks": obs.pending,
        "BusyTasks": obs.busy,
        "DesiredTasks": decision.desired,
    }
    metrics.add_dimension(name="Step", value=step)
    for name, value in values.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    metrics.flush_metrics()


def report_failure(step: str, reason: str) -> None:
    """One step could not be scaled: logged with its reason and counted, per step."""
    logger.error("step not scaled", extra={"step": step, "reason": reason})
    metrics.add_dimension(name="Step", value=step)
    metrics.add_metric(name="ScalerStepErrors", unit=MetricUnit.Count, value=1)
    metrics.flush_metrics()


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Scale one step (``{"step": name, "sent": n}`` from the router) or every step (the schedule); never raises for a step."""
    config, now = aws.pipeline(), time.time()
    woken = isinstance(event, dict) and bool(event.get("step"))
    names = [event["step"]] if woken else config.step_names
    just_sent = int(event.get("sent", 0)) if woken else 0
    decisions, errors = [], []
    for name in names:
        try:
            decisions.append(scale_step(config.step(name), now, just_sent))
        except Exception as error:  # noqa: BLE001 - one step's failure must not stop the others
            reason = f"{type(error).__name__}: {error}"
            report_failure(name, reason)
            errors.append({"step": name, "reason": reason})
    return {"decisions": decisions, "errors": errors}
