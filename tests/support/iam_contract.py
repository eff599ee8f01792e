"""The IAM contract: every AWS call a component makes is allowed by that component's role as applied.

moto enforces no IAM, so a policy that names the wrong resource passes every moto test and fails on
AWS. This module closes the gap. Calls recorded from the running pipeline (tests/support/iam_recorder.py)
become IAM requests: action, the resource ARN AWS authorizes the call against and the condition keys it
carries, taken from the Service Authorization Reference (policy_sentry's offline copy): the ARN is the
first of the action's resource types whose variables the call names, otherwise ``*`` (ListTasks
without a container instance, ListStreams). Each request is evaluated against the inline policies of
the component's role read from the Terraform state of the applied stack.

Calls AWS services make with a component's role on its behalf cannot be recorded here; they are listed
once, in ``ON_BEHALF``, and evaluated the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from policy_sentry.querying.actions import get_action_data

################################################################################
# The applied stack
################################################################################


@dataclass
class State:
    """Resources of a Terraform state file: (type, attributes, index key) of every instance."""

    resources: list[tuple[str, dict[str, Any], Any]]

    @classmethod
    def read(cls, path: Path) -> State:
        raw = json.loads(path.read_text())
        return cls(
            [
                (resource["type"], instance["attributes"], instance.get("index_key"))
                for resource in raw["resources"]
                if resource["mode"] == "managed"
                for instance in resource["instances"]
            ]
        )

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [attributes for type_, attributes, _ in self.resources if type_ == kind]

    def one(self, kind: str, test: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        found = [attributes for attributes in self.of_type(kind) if test(attributes)]
        assert len(found) == 1, f"expected one {kind} for {what}, found {len(found)}"
        return found[0]

    def role_policies(self, role_arn: str) -> list[dict[str, Any]]:
        """The role's inline policies as applied; a managed policy attached to it fails loudly (not evaluated here)."""
        role = self.one("aws_iam_role", lambda r: r["arn"] == role_arn, role_arn)
        attached = [a["policy_arn"] for a in self.of_type("aws_iam_role_policy_attachment") if a["role"] == role["name"]]
        assert not attached, f"{role['name']} has managed policies {attached}: the contract evaluates inline policies only"
        return [json.loads(p["policy"]) for p in self.of_type("aws_iam_role_policy") if p["role"] in (role["name"], role["id"])]

    @property
    def account_and_region(self) -> tuple[str, str]:
        arn = self.of_type("aws_ecs_cluster")[0]["arn"]
        _, _, _, region, account, _ = arn.split(":", 5)
        return account, region


################################################################################
# Components: which role each one's calls are made with. One row per component.
################################################################################


@dataclass(frozen=True)
class LambdaFunction:
    """A function of the lambdas module, by the suffix of its name: its role and handler as applied."""

    suffix: str

    def function(self, state: State) -> dict[str, Any]:
        return state.one("aws_lambda_function", lambda f: f["function_name"].endswith(f"-{self.suffix}"), f"function *-{self.suffix}")

    def role_arn(self, state: State, call: dict[str, Any]) -> str:
        return self.function(state)["role"]

    def made(self, state: State, call: dict[str, Any]) -> bool:
        # The local runtime calls the real handler; its frame is on the stack of every call it makes.
        return call["main"] != "worker" and self.function(state)["handler"] in call["stack"]


@dataclass(frozen=True)
class EcsTask:
    """A step's worker process: the task role of its step's task definition."""

    def role_arn(self, state: State, call: dict[str, Any]) -> str:
        step = call["step"]
        definition = state.one("aws_ecs_task_definition", lambda d: d["family"].endswith(f"-{step}"), f"step {step}")
        return definition["task_role_arn"]

    def made(self, state: State, call: dict[str, Any]) -> bool:
        return call["main"] == "worker"


COMPONENTS: dict[str, LambdaFunction | EcsTask] = {
    "intake": LambdaFunction("intake"),
    "router": LambdaFunction("router"),
    "scaler": LambdaFunction("scaler"),
    "deadletter": LambdaFunction("deadletter"),
    "worker": EcsTask(),
}

# A call from these packages' code must be attributed to a component, or the contract has a hole.
HANDLER_PACKAGES = ("stream_router.", "scaler.")

################################################################################
# Calls -> IAM requests
################################################################################

# API operations whose IAM action is not <service>:<operation> (S3 user guide, "Required permissions
# for Amazon S3 API operations"; Lambda's Invoke). Everything else is checked to exist in the reference.
OPERATION_ACTIONS = {
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "HeadBucket"): "s3:ListBucket",
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "ListObjects"): "s3:ListBucket",
    ("s3", "ListObjectVersions"): "s3:ListBucketVersions",
    ("s3", "CreateMultipartUpload"): "s3:PutObject",
    ("s3", "UploadPart"): "s3:PutObject",
    ("s3", "CompleteMultipartUpload"): "s3:PutObject",
    ("lambda", "Invoke"): "lambda:InvokeFunction",
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
}


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()
    why: str = ""

    def __str__(self) -> str:
        conditions = f" with {dict(self.context)}" if self.context else ""
        return f"{self.action} on {self.resource}{conditions}{f' ({self.why})' if self.why else ''}"


@cache
def reference(action: str) -> list[dict[str, Any]]:
    """The Service Authorization Reference's rows for an action: resource ARN formats and condition keys."""
    service, name = action.split(":")
    data = get_action_data(service, name)
    rows = data.get(service) if isinstance(data, dict) else None
    assert rows, f"{action} is not in the Service Authorization Reference: map the operation in OPERATION_ACTIONS"
    return rows


def action_of(call: dict[str, Any]) -> str:
    service, operation, params = call["signing_name"], call["operation"], call["params"]
    if service == "s3" and operation in ("GetObject", "HeadObject") and params.get("VersionId"):
        return "s3:GetObjectVersion"
    return OPERATION_ACTIONS.get((service, operation), f"{service}:{operation}")


def _last(value: str) -> str:
    return value.rstrip("/").rsplit("/", 1)[-1]


def arn_variables(call: dict[str, Any], account: str, region: str) -> dict[str, list[str]]:
    """The ARN variables (as the reference names them) that the call's parameters fill."""
    params = call["params"]
    found: dict[str, list[str]] = {"Partition": ["aws"], "Region": [region], "Account": [account]}
    if "QueueUrl" in params:
        found["QueueName"] = [_last(params["QueueUrl"])]
    if "TableName" in params:
        found["TableName"] = [params["TableName"]]
    if "StreamArn" in params:
        match = re.search(r":table/([^/]+)/stream/(.+)$", params["StreamArn"])
        if match:
            found["TableName"], found["StreamLabel"] = [match[1]], [match[2]]
    if "Bucket" in params:
        found["BucketName"] = [params["Bucket"]]
    if "Key" in params:
        found["ObjectName"] = [params["Key"]]
    if call["signing_name"] == "ecs":
        found["ClusterName"] = [_last(params.get("cluster") or "default")]
        for name, variable in (("services", "ServiceName"), ("tasks", "TaskId"), ("containerInstances", "ContainerInstanceId")):
            if params.get(name):
                found[variable] = [_last(value) for value in params[name]]
        for name, variable in (("service", "ServiceName"), ("task", "TaskId"), ("containerInstance", "ContainerInstanceId")):
            if params.get(name):
                found[variable] = [_last(params[name])]
    if "FunctionName" in params:
        found["FunctionName"] = [params["FunctionName"].split(":function:")[-1].split(":")[0]]
    if "TopicArn" in params:
        found["TopicName"] = [_last(params["TopicArn"].replace(":", "/"))]
    if "KeyId" in params:
        found["KeyId"] = [_last(params["KeyId"])]
    return found


def condition_context(call: dict[str, Any], account: str, region: str) -> dict[str, str]:
    """Condition keys the call carries, of those the module's policies use."""
    params, context = call["params"], {}
    if call["signing_name"] == "ecs":
        cluster = params.get("cluster") or "default"
        context["ecs:cluster"] = cluster if cluster.startswith("arn:") else f"arn:aws:ecs:{region}:{account}:cluster/{cluster}"
    if call["signing_name"] == "s3" and "Prefix" in params:
        context["s3:prefix"] = params["Prefix"]
    return context


def requests_for(action: str, variables: dict[str, list[str]], context: dict[str, str], why: str = "") -> list[Request]:
    """One request per resource the action is authorized against, as the reference describes it."""
    rows = reference(action)
    keys = {key for row in rows for key in row["condition_keys"]}
    carried = tuple(sorted((key, value) for key, value in context.items() if key in keys))
    for row in rows:
        arn_format = row["resource_arn_format"]
        if arn_format == "*":
            continue
        needed = re.findall(r"\$\{(\w+)\}", arn_format)
        if all(name in variables for name in needed):
            arns = [arn_format]
            for name in needed:
                arns = [arn.replace("${" + name + "}", value) for arn in arns for value in variables[name]]
            return [Request(action, arn, carried, why) for arn in arns]
    return [Request(action, "*", carried, why)]


# TransactWriteItems has no IAM action of its own: each of its items is authorized as the single-item action
# (DynamoDB developer guide, "Using IAM with DynamoDB transactions").
TRANSACT_ACTIONS = {
    "Update": "dynamodb:UpdateItem",
    "Put": "dynamodb:PutItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}


def requests_of(call: dict[str, Any], account: str, region: str) -> list[Request]:
    if call["signing_name"] == "dynamodb" and call["operation"] == "TransactWriteItems":
        return [
            request
            for item in call["params"]["TransactItems"]
            for kind, part in item.items()
            for request in requests_of({**call, "operation": TRANSACT_ACTIONS[kind].split(":")[1], "params": part}, account, region)
        ]
    if call["signing_name"] == "dynamodb" and call["operation"] == "BatchGetItem":
        return [
            request
            for table in call["params"]["RequestItems"]
            for request in requests_for(
                "dynamodb:BatchGetItem", arn_variables({**call, "params": {"TableName": table}}, account, region), {}
            )
        ]
    action = action_of(call)
    return requests_for(action, arn_variables(call, account, region), condition_context(call, account, region))


################################################################################
# What else a call needs: encryption keys, and S3's 404 for a missing key
################################################################################


def implied(component: str, call: dict[str, Any], state: State, account: str, region: str) -> list[Request]:
    out: list[Request] = []
    action = action_of(call)
    params = call["params"]
    # The worker treats a missing input as permanent (worker/errors.py); S3 answers a missing key
    # with 404 rather than 403 only to a caller that may list the bucket (S3 checks ListBucket
    # without an s3:prefix then).
    if component == "worker" and action in ("s3:GetObject", "s3:GetObjectVersion"):
        out += requests_for("s3:ListBucket", {"Partition": ["aws"], "BucketName": [params["Bucket"]]}, {}, "so a missing key answers 404")
    out += kms_requests(action, encryption_key(call, state), account, region)
    return out


# The KMS calls a service makes with the caller's credentials when the resource is encrypted with a
# customer-managed key (KMS developer guide, "How <service> uses AWS KMS"; DynamoDB: the caller needs
# kms:Decrypt and kms:DescribeKey to read and, to write, the key's write actions too, as aws-cdk's
# Table.grantReadData/grantWriteData grant; SQS SSE: producers GenerateDataKey and Decrypt, consumers
# Decrypt; S3 SSE-KMS: PutObject GenerateDataKey, GetObject Decrypt).
_DYNAMODB_READ = ["kms:Decrypt", "kms:DescribeKey"]
_DYNAMODB_WRITE = [*_DYNAMODB_READ, "kms:GenerateDataKey"]
KMS_ON_BEHALF: dict[str, list[str]] = {
    "sqs:SendMessage": ["kms:GenerateDataKey", "kms:Decrypt"],
    "sqs:ReceiveMessage": ["kms:Decrypt"],
    "sns:Publish": ["kms:GenerateDataKey", "kms:Decrypt"],
    "s3:PutObject": ["kms:GenerateDataKey"],
    "s3:GetObject": ["kms:Decrypt"],
    "s3:GetObjectVersion": ["kms:Decrypt"],
    **{f"dynamodb:{a}": _DYNAMODB_READ for a in ("GetItem", "BatchGetItem", "Query", "Scan", "GetRecords")},
    **{f"dynamodb:{a}": _DYNAMODB_WRITE for a in ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")},
}


def kms_requests(action: str, key: str | None, account: str, region: str) -> list[Request]:
    """The KMS requests ``action`` implies on a resource encrypted with ``key`` (None: AWS-owned or no key)."""
    if not key:
        return []
    kms = {"Partition": ["aws"], "Region": [region], "Account": [account], "KeyId": [_last(key)]}
    why = f"{action} on a key-encrypted resource"
    return [r for kms_action in KMS_ON_BEHALF.get(action, []) for r in requests_for(kms_action, kms, {}, why)]


def customer_keys(state: State) -> set[str]:
    """The stack's customer-managed keys: those it created, and the one its queues name (kms_key_arn)."""
    keys = {key["arn"] for key in state.of_type("aws_kms_key")}
    return keys | {q["kms_master_key_id"] for q in state.of_type("aws_sqs_queue") if q.get("kms_master_key_id")}


def table_key(table_name: str, state: State) -> str | None:
    """The customer-managed key of a DynamoDB table (its stream shares it), or None. A table encrypted with
    DynamoDB's AWS-managed key also reads back a key ARN, but that key's policy lets the account's callers use
    it through DynamoDB without an IAM grant, so only the stack's own keys count."""
    for table in state.of_type("aws_dynamodb_table"):
        if table["name"] == table_name:
            sse = (table.get("server_side_encryption") or [{}])[0]
            key = sse.get("kms_key_arn") if sse.get("enabled") else None
            return key if key and key in customer_keys(state) else None
    return None


def resource_key(arn: str, state: State) -> str | None:
    """The customer-managed key of the queue or table (or stream) an ARN names, for calls made on a component's behalf."""
    if arn.startswith("arn:aws:sqs:"):
        return encryption_key({"params": {"QueueUrl": arn.rsplit(":", 1)[1]}}, state)
    match = re.match(r"arn:aws:dynamodb:[^:]*:[^:]*:table/([^/]+)", arn)
    return table_key(match[1], state) if match else None


def encryption_key(call: dict[str, Any], state: State) -> str | None:
    params = call["params"]
    if "QueueUrl" in params:
        queue = [q for q in state.of_type("aws_sqs_queue") if q["url"] == params["QueueUrl"] or q["name"] == _last(params["QueueUrl"])]
        return queue[0].get("kms_master_key_id") or None if queue else None
    if "TopicArn" in params:
        topic = [t for t in state.of_type("aws_sns_topic") if t["arn"] == params["TopicArn"]]
        key = topic[0].get("kms_master_key_id") if topic else None
        return key if key and not key.startswith("alias/aws/") else None
    if "TableName" in params:
        return table_key(params["TableName"], state)
    if "StreamArn" in params:
        return resource_key(params["StreamArn"], state)
    if "Bucket" in params:
        for config in state.of_type("aws_s3_bucket_server_side_encryption_configuration"):
            if config["bucket"] == params["Bucket"]:
                default = config["rule"][0]["apply_server_side_encryption_by_default"][0]
                return default.get("kms_master_key_id") or None
    return None


################################################################################
# Calls AWS services make as their own service principal: CloudWatch alarm actions
################################################################################

# CloudWatch publishes an alarm's actions as cloudwatch.amazonaws.com, and SNS asks KMS for a data key for it, with
# the alarm as aws:SourceArn (SNS Developer Guide, "Key management": compatibility with AWS services). A service
# principal is allowed by the key's policy alone: IAM policies do not apply to it, and the AWS managed key
# alias/aws/sns, whose policy cannot be changed, allows only principals of the account (AWS re:Post, "How do I
# configure a CloudWatch alarm with an encrypted SNS topic").
AWS_MANAGED_SNS_KEY = "alias/aws/sns"


def alarm_action_requests(alarm_arn: str, key: str, account: str, region: str) -> list[Request]:
    """The KMS requests SNS makes for CloudWatch when an alarm's action publishes to a topic encrypted with ``key``."""
    context = (("aws:SourceAccount", account), ("aws:SourceArn", alarm_arn))
    why = f"the alarm {_last(alarm_arn)} publishing to a key-encrypted topic"
    return [Request(r.action, r.resource, context, why) for r in kms_requests("sns:Publish", key, account, region)]


def key_policy_allows(key_policy: dict[str, Any], service: str, request: Request) -> bool:
    """Whether a key policy lets the service principal ``service`` make ``request`` on its key."""
    statements = [s for s in _list(key_policy.get("Statement", [])) if service in _list(s.get("Principal", {}).get("Service", []))]
    return allowed([{"Statement": statements}], request)


def alarm_deliveries(state: State) -> tuple[list[str], list[str]]:
    """(allowed, denied): every KMS request of every alarm action to a key-encrypted topic of the stack."""
    account, region = state.account_and_region
    policies = {key["arn"]: json.loads(key["policy"]) for key in state.of_type("aws_kms_key")}
    topics = {topic["arn"]: topic for topic in state.of_type("aws_sns_topic")}
    passed, denied = [], []
    for alarm in state.of_type("aws_cloudwatch_metric_alarm"):
        for action in sorted(set(alarm.get("alarm_actions") or []) | set(alarm.get("ok_actions") or [])):
            key = (topics.get(action) or {}).get("kms_master_key_id")
            if not key:
                continue  # not the stack's topic, or unencrypted
            if key not in policies:
                denied.append(
                    f"{alarm['alarm_name']} -> {action}: key {key} is no customer-managed key of the stack (CloudWatch may not use it)"
                )
                continue
            for request in alarm_action_requests(alarm["arn"], key, account, region):
                (passed if key_policy_allows(policies[key], "cloudwatch.amazonaws.com", request) else denied).append(str(request))
    return passed, denied


################################################################################
# Calls AWS services make with a component's role on its behalf
################################################################################


@dataclass(frozen=True)
class OnBehalf:
    component: str
    action: str
    resource: Callable[[dict[str, Any]], dict[str, list[str]]]
    why: str
    context: Callable[[dict[str, Any]], dict[str, str]] = field(default=lambda _facts: {})


def _queue(name: str) -> Callable[[dict[str, Any]], dict[str, list[str]]]:
    return lambda facts: {**facts["base"], "QueueName": [facts[name]]}


def _stream(facts: dict[str, Any]) -> dict[str, list[str]]:
    return {**facts["base"], "TableName": [facts["jobs_table"]], "StreamLabel": [facts["stream_label"]]}


def _task(facts: dict[str, Any]) -> dict[str, list[str]]:
    return {**facts["base"], "ClusterName": [facts["cluster"]], "TaskId": ["0123456789abcdef0123456789abcdef"]}


def _in_cluster(facts: dict[str, Any]) -> dict[str, str]:
    return {"ecs:cluster": facts["cluster_arn"]}


_ESM = "Lambda's event source mapping polls with the function's role"
ON_BEHALF = [
    *(OnBehalf("intake", f"sqs:{a}", _queue("intake_queue"), _ESM) for a in ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes")),
    *(OnBehalf("router", f"dynamodb:{a}", _stream, _ESM) for a in ("DescribeStream", "GetShardIterator", "GetRecords")),
    OnBehalf("router", "dynamodb:ListStreams", lambda facts: facts["base"], _ESM),
    OnBehalf("router", "sqs:SendMessage", _queue("router_failures_queue"), "the stream mapping's on-failure destination"),
    *(
        OnBehalf("deadletter", f"sqs:{a}", lambda facts: {**facts["base"], "QueueName": facts["step_dlqs"]}, _ESM)
        for a in ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes")
    ),
    # amazon-ecs-agent's task protection handler calls ECS with the task role's credentials when the
    # worker PUTs $ECS_AGENT_URI/task-protection/v1/state (worker/keepalive.py).
    OnBehalf("worker", "ecs:UpdateTaskProtection", _task, "the ECS agent, for the worker's protection request", _in_cluster),
    OnBehalf("worker", "ecs:GetTaskProtection", _task, "the ECS agent, for the worker's protection request", _in_cluster),
]


def stack_facts(state: State) -> dict[str, Any]:
    account, region = state.account_and_region
    table = state.one("aws_dynamodb_table", lambda t: t["name"].endswith("-jobs"), "the jobs table")
    cluster = state.of_type("aws_ecs_cluster")[0]
    return {
        "base": {"Partition": ["aws"], "Region": [region], "Account": [account]},
        "intake_queue": state.one("aws_sqs_queue", lambda q: q["name"].endswith("-intake"), "the intake queue")["name"],
        "router_failures_queue": state.one("aws_sqs_queue", lambda q: q["name"].endswith("-router-failures"), "the failure queue")["name"],
        "step_dlqs": sorted(q["name"] for q in state.of_type("aws_sqs_queue") if q["name"].endswith("-dlq") and "-intake" not in q["name"]),
        "jobs_table": table["name"],
        "stream_label": table["stream_arn"].rsplit("/stream/", 1)[1],
        "cluster": cluster["name"],
        "cluster_arn": cluster["arn"],
    }


################################################################################
# Policy evaluation (identity policies: explicit deny wins, then any allow)
################################################################################


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _like(pattern: str, value: str, case: bool = True) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def _condition_holds(operator: str, key: str, expected: list[str], context: dict[str, str]) -> bool:
    if_exists = operator.endswith("IfExists")
    operator = operator.removesuffix("IfExists")
    if operator == "Null":
        return (key not in context) == (str(expected[0]).lower() == "true")
    if key not in context:
        return if_exists
    actual = context[key]
    tests = {
        "StringEquals": lambda e: actual == e,
        "StringLike": lambda e: _like(e, actual),
        "ArnEquals": lambda e: actual == e,
        "ArnLike": lambda e: _like(e, actual),
        "Bool": lambda e: actual.lower() == str(e).lower(),
    }
    negated = {"StringNotEquals": "StringEquals", "StringNotLike": "StringLike", "ArnNotEquals": "ArnEquals", "ArnNotLike": "ArnLike"}
    if operator in negated:
        return not any(tests[negated[operator]](e) for e in expected)
    assert operator in tests, f"condition operator {operator} is not evaluated by this contract: add it"
    return any(tests[operator](e) for e in expected)


def _matches(statement: dict[str, Any], request: Request) -> bool:
    context = dict(request.context)
    if "Action" in statement:
        if not any(_like(a, request.action, case=False) for a in _list(statement["Action"])):
            return False
    elif any(_like(a, request.action, case=False) for a in _list(statement.get("NotAction", []))):
        return False
    if "Resource" in statement:
        if not any(_like(r, request.resource) for r in _list(statement["Resource"])):
            return False
    elif any(_like(r, request.resource) for r in _list(statement.get("NotResource", []))):
        return False
    return all(
        _condition_holds(operator, key, [str(v) for v in _list(values)], context)
        for operator, pairs in statement.get("Condition", {}).items()
        for key, values in pairs.items()
    )


def allowed(policies: Iterable[dict[str, Any]], request: Request) -> bool:
    statements = [s for policy in policies for s in _list(policy.get("Statement", []))]
    if any(s["Effect"] == "Deny" and _matches(s, request) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and _matches(s, request) for s in statements)


################################################################################
# The contract
################################################################################


@dataclass
class Verdict:
    checked: dict[str, set[str]]  # component -> requests allowed
    denied: list[str]
    unattributed: list[str]


def attribute(call: dict[str, Any], state: State) -> str | None:
    owners = [name for name, component in COMPONENTS.items() if component.made(state, call)]
    assert len(owners) <= 1, f"{call['operation']} attributed to {owners}"
    return owners[0] if owners else None


def check(calls: list[dict[str, Any]], state: State) -> Verdict:
    account, region = state.account_and_region
    verdict = Verdict({name: set() for name in COMPONENTS}, [], [])

    def evaluate(component: str, role_arn: str, request: Request) -> None:
        if allowed(state.role_policies(role_arn), request):
            verdict.checked[component].add(str(request))
        else:
            line = f"{component} ({role_arn.rsplit('/', 1)[-1]}): {request}"
            if line not in verdict.denied:
                verdict.denied.append(line)

    for call in calls:
        component = attribute(call, state)
        if component is None:
            if any(frame.startswith(HANDLER_PACKAGES) for frame in call["stack"]):
                verdict.unattributed.append(f"{call['operation']} from {call['stack'][:4]}")
            continue
        role_arn = COMPONENTS[component].role_arn(state, call)
        for request in requests_of(call, account, region) + implied(component, call, state, account, region):
            evaluate(component, role_arn, request)

    facts = stack_facts(state)
    for entry in ON_BEHALF:
        component = COMPONENTS[entry.component]
        if isinstance(component, EcsTask):
            roles = [d["task_role_arn"] for d in state.of_type("aws_ecs_task_definition")]
        else:
            roles = [component.role_arn(state, {})]
        for role_arn in roles:
            for request in requests_for(entry.action, entry.resource(facts), entry.context(facts), entry.why):
                evaluate(entry.component, role_arn, request)
                for kms_request in kms_requests(entry.action, resource_key(request.resource, state), account, region):
                    evaluate(entry.component, role_arn, kms_request)
    return verdict


def role_policies_by_component(state: State) -> dict[str, list[dict[str, Any]]]:
    """Every component role's inline policies, for the linter."""
    out = {}
    for name, component in COMPONENTS.items():
        if isinstance(component, EcsTask):
            for definition in state.of_type("aws_ecs_task_definition"):
                out[f"{name} {definition['family']}"] = state.role_policies(definition["task_role_arn"])
        else:
            out[name] = state.role_policies(component.role_arn(state, {}))
    return out


# parliament findings that are right for this module, each with its reason.
ACCEPTED_FINDINGS = {
    ("RESOURCE_STAR", "ecs:ListTasks"): "ListTasks without a container instance is authorized against *; ecs:cluster scopes it",
}


def lint(policy: dict[str, Any]) -> list[str]:
    """parliament's findings for a policy document, less the accepted ones."""
    from parliament import analyze_policy_string

    findings = []
    for finding in analyze_policy_string(json.dumps(policy)).findings:
        actions = finding.detail if isinstance(finding.detail, list) and all(isinstance(a, str) for a in finding.detail) else None
        if actions and all((finding.issue, action) in ACCEPTED_FINDINGS for action in actions):
            continue
        findings.append(f"{finding.issue}: {finding.detail}")
    return findings
