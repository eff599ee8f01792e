"""``gpupipe doctor`` (``make preflight``): read-only checks of the account and the stack, each with what to do.

Run it before the first apply (credentials, region, the G and VT vCPU quotas) and after each apply (the image in
ECR, the AMI, the models under ``models/``, the notification subscriptions). It only reads: STS, Service Quotas,
EC2 DescribeInstanceTypes/DescribeImages, ECR DescribeImages, S3 ListObjectsV2, SNS ListSubscriptionsByTopic and
IAM GetRole. A check whose call the endpoint does not answer (an emulator lacking it, a missing permission) is
printed as one that could not run, never a crash. The exit status is 1 when anything is missing, else 0.

The decisions (which quota an instance type draws on, the vCPUs the steps need at ``max_tasks``) are pure functions;
the AWS calls sit in the ``check_*`` functions at the edge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from gpupipe.region import Region

OK, MISSING, WARNING, NOT_RUN = "ok", "missing", "warning", "not run"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        fix = f"\n         -> {self.fix}" if self.fix else ""
        return f"[{self.status:^7}] {self.name}: {self.detail}{fix}"


################################################################################
# Decisions
################################################################################

# EC2 vCPU quotas (Service Quotas, service code ec2) by instance class and purchase option.
QUOTAS: dict[tuple[str, bool], tuple[str, str]] = {
    ("G and VT", False): ("L-DB2E81BA", "Running On-Demand G and VT instances"),
    ("G and VT", True): ("L-3819A6DF", "All G and VT Spot Instance Requests"),
    ("P", False): ("L-417A185B", "Running On-Demand P instances"),
    ("P", True): ("L-7212CCBC", "All P Spot Instance Requests"),
    ("Standard", False): ("L-1216C47A", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"),
    ("Standard", True): ("L-34B43A08", "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests"),
}


def quota_class(instance_type: str) -> str | None:
    """The vCPU quota class an instance type draws on; None for classes not checked here (X, F, Inf, Trn, DL, HPC, Mac)."""
    family = instance_type.split(".", 1)[0].lower()
    if family.startswith(("g", "vt")):
        return "G and VT"
    if family.startswith("p"):
        return "P"
    if family.startswith(("inf", "trn", "dl", "hpc", "mac")):  # quotas of their own
        return None
    if family[:1] in "acdhimrtz":
        return "Standard"
    return None


def vcpus_needed(steps: Mapping[str, Mapping[str, Any]], vcpus_of: Mapping[str, int]) -> dict[tuple[str, bool], int]:
    """vCPUs each quota must allow with every step at max_tasks (one task per instance), on its largest instance type."""
    needed: dict[tuple[str, bool], int] = {}
    for step in steps.values():
        largest: dict[str, int] = {}
        for instance_type in step["instance_types"]:
            kind = quota_class(instance_type)
            if kind is not None:
                largest[kind] = max(largest.get(kind, 0), vcpus_of[instance_type])
        for kind, vcpus in largest.items():
            key = (kind, bool(step.get("spot")))
            needed[key] = needed.get(key, 0) + vcpus * int(step["max_tasks"])
    return needed


def quota_check(kind: str, spot: bool, value: float | None, needed: int | None) -> Check:
    code, name = QUOTAS[(kind, spot)]
    title = f"quota {name} ({code})"
    request = f"request it in the Service Quotas console, or: aws service-quotas request-service-quota-increase --service-code ec2 --quota-code {code} --desired-value"  # noqa: E501
    if value is None:
        return Check(title, NOT_RUN, "Service Quotas did not answer")
    if needed is None:
        status = WARNING if value < 4 else OK
        return Check(title, status, f"{value:g} vCPUs", f"{request} 16 (4 g4dn.xlarge)" if status == WARNING else "")
    if value < needed:
        return Check(title, MISSING, f"{value:g} vCPUs, the steps need {needed} at max_tasks", f"{request} {needed}")
    return Check(title, OK, f"{value:g} vCPUs, the steps need {needed} at max_tasks")


def model_names(steps: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """Model name -> the steps that load it from ``${MODELS_URI}<name>``."""
    out: dict[str, list[str]] = {}
    for step_name, step in steps.items():
        for model in step.get("models") or []:
            out.setdefault(model, []).append(step_name)
    return out


def region_check(region: Region) -> Check:
    """The region the checks ran in and where it came from; a disagreement with the environment is a warning."""
    if region.name is None:
        return Check("region", MISSING, "none set", "set AWS_REGION (the region of the stack)")
    if region.mismatch:
        return Check("region", WARNING, region.mismatch, f"checked {region.name}; export AWS_REGION={region.name}, or unset AWS_REGION")
    return Check("region", OK, f"{region.name} ({region.source})")


def subscription_check(name: str, topic: str | None, subscriptions: list[dict[str, Any]] | None, variable: str) -> Check:
    if topic is None:
        return Check(name, WARNING, "no topic", f"set {variable} (email addresses) and apply")
    if subscriptions is None:
        return Check(name, NOT_RUN, f"SNS did not answer for {topic}")
    confirmed = [s for s in subscriptions if s.get("SubscriptionArn", "").startswith("arn:")]
    pending = [s for s in subscriptions if s.get("SubscriptionArn") == "PendingConfirmation"]
    if confirmed:
        return Check(name, OK, f"{len(confirmed)} confirmed ({', '.join(s.get('Endpoint', '?') for s in confirmed)})")
    if pending:
        return Check(name, WARNING, f"{len(pending)} waiting for confirmation", "click the link in the mail AWS sent to each address")
    return Check(name, WARNING, "nobody subscribed", f"set {variable} (email addresses) and apply, or subscribe to {topic}")


################################################################################
# Checks against the account (read-only calls)
################################################################################


def _reason(error: BaseException) -> str:
    if isinstance(error, ClientError):
        return f"{error.response.get('Error', {}).get('Code', 'error')}: {error.response.get('Error', {}).get('Message', '')}".strip()
    return f"{type(error).__name__}: {error}"


def guarded(name: str, run: Callable[[], list[Check]]) -> list[Check]:
    """Run a check; a call the endpoint refuses or does not implement is a check that could not run."""
    try:
        return run()
    except (ClientError, BotoCoreError, NotImplementedError, KeyError) as error:
        return [Check(name, NOT_RUN, _reason(error))]


def check_credentials(session: Any) -> list[Check]:
    try:
        identity = session.client("sts").get_caller_identity()
    except NoCredentialsError:
        return [Check("credentials", MISSING, "no AWS credentials", "aws configure, or set AWS_PROFILE / AWS_ACCESS_KEY_ID")]
    except NoRegionError:
        return [Check("credentials", MISSING, "no region", "set AWS_REGION (the region of the stack)")]
    return [Check("credentials", OK, f"account {identity['Account']} as {identity['Arn']}")]


def instance_vcpus(session: Any, types: Iterable[str]) -> dict[str, int]:
    answer = session.client("ec2").describe_instance_types(InstanceTypes=sorted(set(types)))
    return {t["InstanceType"]: int(t["VCpuInfo"]["DefaultVCpus"]) for t in answer["InstanceTypes"]}


def quota_value(session: Any, code: str) -> float | None:
    try:
        return float(session.client("service-quotas").get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"])
    except (ClientError, BotoCoreError, NotImplementedError, KeyError):
        return None


def check_quotas(session: Any, steps: Mapping[str, Mapping[str, Any]] | None) -> list[Check]:
    if not steps:
        # Before the first apply: the GPU quotas themselves (a new account often has 0).
        return [quota_check(kind, spot, quota_value(session, QUOTAS[(kind, spot)][0]), None) for kind, spot in QUOTAS if kind == "G and VT"]
    types = [t for step in steps.values() for t in step["instance_types"]]
    needed = vcpus_needed(steps, instance_vcpus(session, types))
    return [quota_check(kind, spot, quota_value(session, QUOTAS[(kind, spot)][0]), vcpus) for (kind, spot), vcpus in sorted(needed.items())]


def check_images(session: Any, preflight: Mapping[str, Any]) -> list[Check]:
    repository_url = preflight["ecr_repository_url"]
    repository = repository_url.rsplit("/", 1)[1]
    checks = []
    for image in sorted({step["image"] for step in preflight["steps"].values()}):
        name = f"image {image}"
        if not image.startswith(repository_url + ":"):
            checks.append(Check(name, NOT_RUN, f"not in the module's repository {repository_url}: not checked"))
            continue
        tag = image.split(":", 1)[1]
        try:
            session.client("ecr").describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
            checks.append(Check(name, OK, "in ECR"))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ImageNotFoundException":
                raise
            checks.append(Check(name, MISSING, "not in ECR", f"make image IMAGE_TAG={tag} (then workers can pull it)"))
    return checks


def check_amis(session: Any, preflight: Mapping[str, Any]) -> list[Check]:
    checks = []
    gpu = {step["ami_id"] for step in preflight["steps"].values() if step.get("ami_id") and step.get("gpus", 0) > 0}
    for ami in sorted({step["ami_id"] for step in preflight["steps"].values() if step.get("ami_id")}):
        images = session.client("ec2").describe_images(ImageIds=[ami])["Images"]
        state = images[0].get("State") if images else None
        if state != "available":
            fix = "make ami WORKER_IMAGE=<image URI>, then set gpu_ami_id to the id it prints and apply"
            checks.append(Check(f"AMI {ami}", MISSING, f"state {state or 'not found'}", fix))
        elif ami in gpu and images[0].get("ImageOwnerAlias") == "amazon":
            fix = "make ami WORKER_IMAGE=<image URI> pre-pulls it; set gpu_ami_id to the id it prints"
            checks.append(Check(f"AMI {ami}", WARNING, "the stock ECS GPU AMI: every cold start pulls the multi-GB image", fix))
        else:
            checks.append(Check(f"AMI {ami}", OK, f"{images[0].get('Name', '')} available"))
    return checks or [Check("AMI", NOT_RUN, "the stack creates no instances (create_capacity = false)")]


def check_models(session: Any, bucket: str, prefix: str, steps: Mapping[str, Mapping[str, Any]]) -> list[Check]:
    wanted = model_names(steps)
    if not wanted:
        return [Check("models", OK, "no step loads a model from models/")]
    checks = []
    s3 = session.client("s3")
    for model, users in sorted(wanted.items()):
        keys = [obj["Key"] for obj in s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}{model}/").get("Contents", [])]
        name = f"model {model} (steps {', '.join(users)})"
        if any(key.endswith("/saved_model.pb") for key in keys):
            checks.append(Check(name, OK, f"s3://{bucket}/{prefix}{model}/ holds a SavedModel"))
        else:
            checks.append(Check(name, MISSING, f"no saved_model.pb under s3://{bucket}/{prefix}{model}/", f"make model MODEL={model}"))
    return checks


def check_subscriptions(session: Any, preflight: Mapping[str, Any]) -> list[Check]:
    checks = []
    topics = (("job notifications", "jobs_topic_arn", "notification_emails"), ("alarms", "alarm_topic_arn", "alarm_emails"))
    for name, key, variable in topics:
        topic = preflight.get(key)
        subscriptions = None
        if topic:
            subscriptions = session.client("sns").list_subscriptions_by_topic(TopicArn=topic).get("Subscriptions", [])
        checks.append(subscription_check(name, topic, subscriptions, variable))
    return checks


def check_autoscaling_role(session: Any) -> list[Check]:
    name = "Auto Scaling service-linked role"
    try:
        session.client("iam").get_role(RoleName="AWSServiceRoleForAutoScaling")
        return [Check(name, OK, "exists")]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "NoSuchEntity":
            raise
    fix = (
        "with create_kms_key = true set create_autoscaling_service_linked_role = true (KMS refuses a key policy naming a "
        "missing role), or: aws iam create-service-linked-role --aws-service-name autoscaling.amazonaws.com"
    )
    return [Check(name, WARNING, "absent (AWS creates it with the account's first Auto Scaling group)", fix)]


def run_checks(session: Any, outputs: Mapping[str, Any] | None, region: Region | None = None) -> list[Check]:
    """Every check, in the order of the README's walkthrough, in ``region`` (gpupipe/region.py chose it)."""
    checks = check_credentials(session)
    if checks[0].status == OK:
        checks.append(region_check(region or Region(session.region_name, "the AWS profile")))
    if any(c.status == MISSING for c in checks):
        return checks
    stack: Mapping[str, Any] = outputs or {}
    preflight = stack.get("preflight")
    steps = preflight["steps"] if preflight else None
    checks += guarded("quotas", lambda: check_quotas(session, steps))
    if not preflight or preflight.get("create_capacity", True):
        checks += guarded("Auto Scaling service-linked role", lambda: check_autoscaling_role(session))
    if not preflight:
        checks.append(Check("stack", NOT_RUN, "no Terraform outputs with preflight: apply first, then run this again"))
        return checks
    checks.append(Check("stack", OK, f"{len(preflight['steps'])} steps in {session.region_name}"))
    checks += guarded("image", lambda: check_images(session, preflight))
    checks += guarded("AMI", lambda: check_amis(session, preflight))
    bucket, prefix = stack["bucket_name"], stack.get("models_prefix", "models/")
    checks += guarded("models", lambda: check_models(session, bucket, prefix, preflight["steps"]))
    checks += guarded("notifications", lambda: check_subscriptions(session, preflight))
    return checks


def report(checks: list[Check], write: Callable[[str], object] = print) -> int:
    for check in checks:
        write(check.line())
    missing = [c for c in checks if c.status == MISSING]
    counts = {status: sum(c.status == status for c in checks) for status in (OK, MISSING, WARNING, NOT_RUN)}
    write(", ".join(f"{n} {status}" for status, n in counts.items()))
    return 1 if missing else 0
