"""The scaler Lambda: every minute, and when the router wakes it for a step.

Reads each step's queue attributes directly (CloudWatch's SQS metrics lag by
minutes), the ECS service and its protected tasks, applies ``decide`` and sets
the service's desired count. The capacity provider's managed scaling follows
with instances, and its managed termination protection keeps instances that
run tasks, so scale-in removes only idle capacity.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline_core import aws
from pipeline_core.jobstore import from_dynamo, to_dynamo
from pipeline_core.pipeline import StepConfig
from scaler.decision import Decision, Observation, decide

logger = Logger()  # service name from POWERTOOLS_SERVICE_NAME ("scaler"), as the dashboard expects
metrics = Metrics(namespace="GpuPipeline")

QUEUE_ATTRIBUTES = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"]


def state_table() -> Any:
    return aws.table(aws.pipeline().scaler_state_table)


def observe(step: StepConfig, idle_since: float | None, now: float) -> Observation:
    config = aws.pipeline()
    attrs = aws.client("sqs").get_queue_attributes(QueueUrl=step.queue_url, AttributeNames=QUEUE_ATTRIBUTES)["Attributes"]
    ecs = aws.client("ecs")
    service = ecs.describe_services(cluster=config.cluster, services=[step.service])["services"][0]
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
        idle_since=idle_since,
        now=now,
    )


def scale_step(step: StepConfig, now: float) -> dict[str, Any]:
    state = from_dynamo(state_table().get_item(Key={"step": step.name}, ConsistentRead=True).get("Item") or {})
    obs = observe(step, state.get("idle_since"), now)
    decision: Decision = decide(obs, step.scaling)
    changed = decision.desired != obs.desired
    if changed:
        aws.client("ecs").update_service(cluster=aws.pipeline().cluster, service=step.service, desiredCount=decision.desired)
    item = {"step": step.name, "desired": decision.desired, "reason": decision.reason, "updated_at": now}
    if decision.idle_since is not None:
        item["idle_since"] = decision.idle_since
    state_table().put_item(Item=to_dynamo(item))
    publish(step.name, obs, decision)
    fields = {"step": step.name, "backlog": obs.backlog, "busy": obs.busy, "from": obs.desired, "to": decision.desired}
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


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Scale one step (``{"step": name}`` from the router) or every step (the schedule)."""
    config, now = aws.pipeline(), time.time()
    names = [event["step"]] if isinstance(event, dict) and event.get("step") else config.step_names
    decisions = []
    for name in names:
        try:
            step = config.step(name)
        except KeyError as error:
            logger.error("unknown step", extra={"step": name, "reason": str(error)})
            continue
        decisions.append(scale_step(step, now))
    return {"decisions": decisions}
