"""The IAM contract's own parts: calls -> requests from the Service Authorization Reference, and the
policy evaluator. The contract itself runs against the applied stack in tests/test_e2e.py."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.iam_contract import Request, allowed, lint, requests_of

pytestmark = pytest.mark.unit

ACCOUNT, REGION = "123456789012", "us-east-1"
CLUSTER_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/pipe"


def call(signing_name: str, operation: str, **params: Any) -> dict[str, Any]:
    return {"signing_name": signing_name, "operation": operation, "params": params, "main": "local_runtime", "stack": []}


def policy(*statements: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"Version": "2012-10-17", "Statement": list(statements)}]


def test_listing_a_clusters_tasks_is_authorized_against_star_with_the_cluster_condition() -> None:
    [request] = requests_of(call("ecs", "ListTasks", cluster="pipe", serviceName="pipe-detect", desiredStatus="RUNNING"), ACCOUNT, REGION)
    assert request == Request("ecs:ListTasks", "*", (("ecs:cluster", CLUSTER_ARN),))
    old = policy(
        {"Effect": "Allow", "Action": ["ecs:ListTasks"], "Resource": [f"arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/pipe/*"]}
    )
    new = policy({"Effect": "Allow", "Action": "ecs:ListTasks", "Resource": "*", "Condition": {"ArnEquals": {"ecs:cluster": CLUSTER_ARN}}})
    other = policy({"Effect": "Allow", "Action": "ecs:ListTasks", "Resource": "*", "Condition": {"ArnEquals": {"ecs:cluster": "x"}}})
    assert not allowed(old, request) and allowed(new, request) and not allowed(other, request)


def test_task_protection_names_each_task_and_list_streams_takes_star() -> None:
    tasks = [f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/pipe/{n}" for n in ("a1", "b2")]
    requests = requests_of(call("ecs", "GetTaskProtection", cluster="pipe", tasks=tasks), ACCOUNT, REGION)
    assert [r.resource for r in requests] == tasks
    [streams] = requests_of(call("dynamodb", "ListStreams", TableName="pipe-jobs"), ACCOUNT, REGION)
    assert streams.resource == "*"
    on_stream = policy(
        {"Effect": "Allow", "Action": "dynamodb:ListStreams", "Resource": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/pipe-jobs/stream/x"}
    )
    assert not allowed(on_stream, streams)


def test_s3_operations_map_to_their_actions_and_object_arns() -> None:
    [head] = requests_of(call("s3", "HeadObject", Bucket="media", Key="uploads/a b.jpg", VersionId="v1"), ACCOUNT, REGION)
    assert head == Request("s3:GetObjectVersion", "arn:aws:s3:::media/uploads/a b.jpg")
    reads = policy({"Effect": "Allow", "Action": ["s3:GetObject*"], "Resource": ["arn:aws:s3:::media/uploads/*"]})
    deny = {"Effect": "Deny", "Action": "s3:*", "Resource": "*"}
    assert allowed(reads, head) and not allowed([*reads, {"Statement": [deny]}], head)


def test_parliament_flags_an_action_on_a_resource_it_cannot_take() -> None:
    stream = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/pipe-jobs/stream/*"
    assert lint({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": stream}]})
    assert not lint({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "dynamodb:GetRecords", "Resource": stream}]})


def test_a_transaction_is_authorized_item_by_item_and_a_batch_read_per_table() -> None:
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/pipe-jobs"
    update = {"TableName": "pipe-jobs", "Key": {"job_id": "j"}, "UpdateExpression": "SET a = :a"}
    requests = requests_of(call("dynamodb", "TransactWriteItems", TransactItems=[{"Update": update}, {"Update": update}]), ACCOUNT, REGION)
    assert requests == [Request("dynamodb:UpdateItem", table)] * 2
    [read] = requests_of(call("dynamodb", "BatchGetItem", RequestItems={"pipe-jobs": {"Keys": [{"job_id": "j"}]}}), ACCOUNT, REGION)
    assert read == Request("dynamodb:BatchGetItem", table)
    only_single_items = policy({"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:UpdateItem"], "Resource": table})
    assert all(allowed(only_single_items, r) for r in requests) and not allowed(only_single_items, read)
