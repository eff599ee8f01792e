"""terraform/examples/local applied to a moto server (tests/support/stack.py): the wiring a user relies on.

The stack is applied once per test session and destroyed at its end, where the
destroy is checked too.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from pipeline_core.pipeline import PipelineConfig
from pipeline_core.s3events import created_objects
from tests.support.iam_contract import State, alarm_deliveries, reference
from worker.config import WorkerConfig

pytestmark = pytest.mark.e2e


@pytest.fixture
def deployed(local_stack):
    return local_stack


def receive_all(sqs: Any, queue_url: str, wait: float = 5) -> list[dict[str, Any]]:
    deadline, bodies = time.monotonic() + wait, []
    while time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        if bodies:
            time.sleep(0.5)
    return bodies


def test_an_upload_under_the_input_prefix_produces_intake_work(deployed) -> None:
    _, outputs, aws = deployed
    bucket, intake = outputs["bucket_name"], outputs["intake_queue_url"]
    aws["s3"].put_object(Bucket=bucket, Key="uploads/street scene.JPG", Body=b"\xff\xd8\xff")
    aws["s3"].put_object(Bucket=bucket, Key="uploads/photo.Jpg", Body=b"\xff\xd8\xff")
    aws["s3"].put_object(Bucket=bucket, Key="uploads/notes.txt", Body=b"not media")
    aws["s3"].put_object(Bucket=bucket, Key="elsewhere/a.jpg", Body=b"\xff\xd8\xff")
    # S3 may send a test event first; the router's own parser reads what arrived. Only the prefix
    # filters here (S3's suffix filters are case-sensitive): intake matches suffixes in any case.
    keys = [obj.key for body in receive_all(aws["sqs"], intake) for obj in created_objects(body)]
    assert sorted(keys) == ["uploads/notes.txt", "uploads/photo.Jpg", "uploads/street scene.JPG"]


def test_every_queue_has_its_dead_letter_queue(deployed) -> None:
    _, outputs, aws = deployed
    queues = [outputs["intake_queue_url"]] + [step["queue_url"] for step in outputs["steps"].values()]
    for queue_url in queues:
        attributes = aws["sqs"].get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy", "QueueArn"])["Attributes"]
        redrive = json.loads(attributes["RedrivePolicy"])
        dlq_name = redrive["deadLetterTargetArn"].rsplit(":", 1)[1]
        assert dlq_name == attributes["QueueArn"].rsplit(":", 1)[1] + "-dlq"
        assert aws["sqs"].get_queue_url(QueueName=dlq_name)["QueueUrl"]
        assert int(redrive["maxReceiveCount"]) >= 1


def test_task_definitions_carry_the_environment_the_worker_reads(deployed) -> None:
    _, outputs, aws = deployed
    for step_name, step in outputs["steps"].items():
        task = aws["ecs"].describe_task_definition(taskDefinition=step["task_definition_arn"])["taskDefinition"]
        [container] = task["containerDefinitions"]
        env = {item["name"]: item["value"] for item in container["environment"]}
        config = WorkerConfig.from_env(env)  # the worker would start with exactly this
        assert (config.queue_url, config.step_name, config.jobs_table) == (step["queue_url"], step_name, outputs["jobs_table_name"])
        assert config.results_bucket == outputs["bucket_name"]
        assert container["stopTimeout"] >= config.grace_seconds + config.wait_time_seconds
        assert aws["fresh_desired"][step_name] == 0, "a fresh pipeline runs no tasks"


def test_lambdas_read_one_pipeline_definition_naming_the_deployed_queues(deployed) -> None:
    _, outputs, aws = deployed
    for function_name in outputs["function_names"].values():
        env = aws["lambda"].get_function_configuration(FunctionName=function_name)["Environment"]["Variables"]
        config = PipelineConfig.from_env(env)
        assert [step.queue_url for step in config.steps] == [step["queue_url"] for step in outputs["steps"].values()]
        assert config.jobs_table == outputs["jobs_table_name"]


def test_the_pipeline_definition_names_each_steps_dead_letter_queue_as_deployed(deployed) -> None:
    _, outputs, aws = deployed
    config = PipelineConfig.from_dict(json.loads(outputs["pipeline_config"]))
    for step in config.steps:
        attributes = aws["sqs"].get_queue_attributes(QueueUrl=step.queue_url, AttributeNames=["RedrivePolicy"])["Attributes"]
        redrive = json.loads(attributes["RedrivePolicy"])
        assert (redrive["deadLetterTargetArn"], int(redrive["maxReceiveCount"])) == (step.dlq_arn, step.max_receive_count)
        assert step.dlq_url == outputs["steps"][step.name]["dlq_url"]
        assert config.step_for_dead_letter_queue(step.dlq_arn) == step
    assert "deadletter" in outputs["function_names"]


def test_iam_policies_name_only_the_modules_own_resources(deployed) -> None:
    _, outputs, aws = deployed
    name, iam = aws["name"], aws["iam"]
    key = outputs["preflight"]["kms_key_arn"]  # the deployment's customer-managed key (its ARN carries no name)
    roles = [role["RoleName"] for role in iam.list_roles()["Roles"] if role["RoleName"].startswith(name + "-")]
    assert len(roles) >= 5
    # "*" only where the action has no resource types in the Service Authorization Reference
    # (ecr:GetAuthorizationToken, dynamodb:ListStreams), or with a condition naming this deployment's
    # resource (ecs:ListTasks by ecs:cluster); every other statement names a resource of this deployment.

    def wildcard_ok(actions: set[str], statement: dict) -> bool:
        scoped = name in json.dumps(statement.get("Condition", {}))
        return scoped or all(row["resource_arn_format"] == "*" for action in actions for row in reference(action))

    for role in roles:
        for policy_name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
            document = iam.get_role_policy(RoleName=role, PolicyName=policy_name)["PolicyDocument"]
            document = json.loads(document) if isinstance(document, str) else document
            for statement in document["Statement"]:
                resources = [statement["Resource"]] if isinstance(statement["Resource"], str) else statement["Resource"]
                actions = {statement["Action"]} if isinstance(statement["Action"], str) else set(statement["Action"])
                for resource in resources:
                    if resource == "*":
                        assert wildcard_ok(actions, statement), f"{role}/{policy_name} grants {actions} on *"
                    else:
                        assert name in resource or resource == key, f"{role}/{policy_name} names {resource}, not a resource of {name}"


def test_no_security_group_accepts_inbound_traffic(deployed) -> None:
    _, _, aws = deployed
    groups = aws["ec2"].describe_security_groups(Filters=[{"Name": "tag:Example", "Values": ["local"]}])["SecurityGroups"]
    vpcs = {group["VpcId"] for group in groups}
    everything = aws["ec2"].describe_security_groups(Filters=[{"Name": "vpc-id", "Values": sorted(vpcs)}])["SecurityGroups"]
    assert everything
    assert [group["GroupName"] for group in everything if group["IpPermissions"]] == []


def test_preflight_runs_against_the_local_stack_and_prints_each_check(deployed, moto_endpoint, monkeypatch, tmp_path, capsys) -> None:
    """`make preflight TF_EXAMPLE=terraform/examples/local` with AWS_ENDPOINT_URL: every check printed, none crashing."""
    from gpupipe.cli import main as gpupipe

    _, outputs, _ = deployed
    saved = tmp_path / "outputs.json"
    saved.write_text(json.dumps(outputs))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    code = gpupipe(["--outputs", str(saved), "doctor"])
    printed = capsys.readouterr().out
    for check in ("credentials", "region", "quota ", "stack", "image ", "AMI", "models", "job notifications", "alarms"):
        assert f"] {check}" in printed, f"{check} was not checked:\n{printed}"
    assert code == 0, printed


def test_every_alarm_may_use_the_key_of_the_topic_it_notifies(deployed) -> None:
    terraform, _, _ = deployed
    state = State.read(terraform.state)
    passed, denied = alarm_deliveries(state)
    assert not denied, "CloudWatch could not publish:\n  " + "\n  ".join(denied)
    # Two KMS requests (data key, decrypt) per alarm: every alarm notifies the key-encrypted alarms topic.
    assert len(passed) == 2 * len(state.of_type("aws_cloudwatch_metric_alarm")) > 0
