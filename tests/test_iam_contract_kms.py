"""The IAM contract's KMS mapping: with a customer-managed key, DynamoDB, SQS and S3 call KMS with the
caller's credentials, so a role that reads or writes a key-encrypted table needs the key too. Before the mapping the
contract asked nothing of the scaler's role, whose state table is encrypted with the key: it never scaled."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.iam_contract import State, alarm_deliveries, allowed, implied, kms_requests, resource_key

pytestmark = pytest.mark.unit

ACCOUNT, REGION = "123456789012", "eu-west-1"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/11111111-2222-3333-4444-555555555555"
SCALER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/pipe-scaler"

# The scaler's statements as the lambdas module rendered them before this issue: its state table, no key.
SCALER_STATE = {
    "Sid": "ScalerState",
    "Effect": "Allow",
    "Action": ["dynamodb:GetItem", "dynamodb:PutItem"],
    "Resource": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/pipe-scaler-state",
}
KEY_ACTIONS = ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"]
KEY_STATEMENT = {"Sid": "EncryptionKey", "Effect": "Allow", "Action": KEY_ACTIONS, "Resource": KEY}


def state(key: str | None, *statements: dict[str, Any]) -> State:
    sse = [{"enabled": key is not None, "kms_key_arn": key or ""}]
    return State(
        [
            ("aws_ecs_cluster", {"arn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/pipe", "name": "pipe"}, None),
            ("aws_dynamodb_table", {"name": "pipe-scaler-state", "server_side_encryption": sse}, None),
            ("aws_dynamodb_table", {"name": "pipe-jobs", "server_side_encryption": sse, "stream_arn": "x/stream/l"}, None),
            ("aws_sqs_queue", {"name": "pipe-people", "url": "https://sqs/pipe-people", "kms_master_key_id": key}, None),
            ("aws_iam_role", {"arn": SCALER_ROLE, "name": "pipe-scaler", "id": "pipe-scaler"}, None),
            ("aws_iam_role_policy", {"role": "pipe-scaler", "policy": _policy(*statements)}, None),
        ]
    )


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def call(operation: str, **params: Any) -> dict[str, Any]:
    return {"signing_name": "dynamodb", "operation": operation, "params": params, "main": "local_runtime", "stack": ["scaler.app.handler"]}


def test_reading_a_key_encrypted_table_needs_decrypt_and_describe_key_and_writing_needs_a_data_key() -> None:
    stack = state(KEY, SCALER_STATE)
    read = {r.action for r in implied("scaler", call("GetItem", TableName="pipe-scaler-state"), stack, ACCOUNT, REGION)}
    write = {r.action for r in implied("scaler", call("PutItem", TableName="pipe-scaler-state"), stack, ACCOUNT, REGION)}
    assert read == {"kms:Decrypt", "kms:DescribeKey"}
    assert write == {"kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"}
    requests = implied("scaler", call("GetItem", TableName="pipe-scaler-state"), stack, ACCOUNT, REGION)
    [decrypt] = [r for r in requests if r.action == "kms:Decrypt"]
    assert decrypt.resource == KEY


def test_the_scalers_policy_without_the_key_is_denied_and_with_it_allowed() -> None:
    for operation in ("GetItem", "PutItem"):
        before = state(KEY, SCALER_STATE)
        needed = implied("scaler", call(operation, TableName="pipe-scaler-state"), before, ACCOUNT, REGION)
        assert needed and not all(allowed(before.role_policies(SCALER_ROLE), r) for r in needed), "the scaler could not scale"
        after = state(KEY, SCALER_STATE, KEY_STATEMENT)
        assert all(allowed(after.role_policies(SCALER_ROLE), r) for r in needed)


def test_no_key_no_kms_requests() -> None:
    stack = state(None, SCALER_STATE)
    assert implied("scaler", call("PutItem", TableName="pipe-scaler-state"), stack, ACCOUNT, REGION) == []


def test_dynamodbs_aws_managed_key_needs_no_grant() -> None:
    # With SSE on and no key given, the table reads back the ARN of the AWS-managed aws/dynamodb key.
    managed = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/99999999-0000-0000-0000-000000000000"
    stack = state(None, SCALER_STATE)
    for kind, attributes, _ in stack.resources:
        if kind == "aws_dynamodb_table":
            attributes["server_side_encryption"] = [{"enabled": True, "kms_key_arn": managed}]
    assert implied("scaler", call("GetItem", TableName="pipe-scaler-state"), stack, ACCOUNT, REGION) == []


def test_calls_made_on_a_components_behalf_find_the_key_of_the_queue_or_table_they_name() -> None:
    stack = state(KEY, SCALER_STATE)
    stream = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/pipe-jobs/stream/2026-01-01T00:00:00.000"
    assert resource_key(stream, stack) == KEY
    assert resource_key(f"arn:aws:sqs:{REGION}:{ACCOUNT}:pipe-people", stack) == KEY
    assert {r.action for r in kms_requests("dynamodb:GetRecords", KEY, ACCOUNT, REGION)} == {"kms:Decrypt", "kms:DescribeKey"}
    assert {r.action for r in kms_requests("sqs:ReceiveMessage", KEY, ACCOUNT, REGION)} == {"kms:Decrypt"}


# The key policy's CloudWatch statement as modules/kms_key_policy renders it for a pipeline named "pipe".
CLOUDWATCH_ALARMS = {
    "Sid": "CloudWatchAlarms",
    "Effect": "Allow",
    "Principal": {"Service": "cloudwatch.amazonaws.com"},
    "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
    "Resource": "*",
    "Condition": {
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
        "ArnLike": {"aws:SourceArn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:pipe-*"},
    },
}
ACCOUNT_ROOT = {
    "Sid": "AccountIamPolicies",
    "Effect": "Allow",
    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
    "Action": "kms:*",
    "Resource": "*",
}
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:pipe-alarms"


def alarms_stack(topic_key: str, *key_statements: dict[str, Any], alarm: str = "pipe-people-cannot-start") -> State:
    return State(
        [
            ("aws_ecs_cluster", {"arn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/pipe", "name": "pipe"}, None),
            ("aws_kms_key", {"arn": KEY, "policy": _policy(*key_statements)}, None),
            ("aws_sns_topic", {"arn": TOPIC, "kms_master_key_id": topic_key}, None),
            (
                "aws_cloudwatch_metric_alarm",
                {
                    "alarm_name": alarm,
                    "arn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{alarm}",
                    "alarm_actions": [TOPIC],
                    "ok_actions": [TOPIC],
                },
                None,
            ),
        ]
    )


def test_an_alarm_cannot_publish_to_a_topic_under_the_aws_managed_sns_key() -> None:
    passed, denied = alarm_deliveries(alarms_stack("alias/aws/sns", ACCOUNT_ROOT, CLOUDWATCH_ALARMS))
    assert passed == [] and len(denied) == 1 and "alias/aws/sns is no customer-managed key" in denied[0]


def test_cloudwatch_needs_its_own_key_policy_statement_and_gets_it_for_the_pipelines_alarms_only() -> None:
    # The account's IAM statement does not let a service principal use the key: before the statement, denied.
    _, denied = alarm_deliveries(alarms_stack(KEY, ACCOUNT_ROOT))
    assert {line.split(" on ")[0] for line in denied} == {"kms:Decrypt", "kms:GenerateDataKey"}
    passed, denied = alarm_deliveries(alarms_stack(KEY, ACCOUNT_ROOT, CLOUDWATCH_ALARMS))
    assert denied == [] and {line.split(" on ")[0] for line in passed} == {"kms:Decrypt", "kms:GenerateDataKey"}
    _, denied = alarm_deliveries(alarms_stack(KEY, ACCOUNT_ROOT, CLOUDWATCH_ALARMS, alarm="other-pipeline-errors"))
    assert len(denied) == 2, "another pipeline's alarms may not use this pipeline's key"
