data "aws_region" "current" {}

locals {
  steps          = { for step in var.steps : step.name => step }
  any_gpu        = anytrue([for step in var.steps : step.gpus > 0])
  any_cpu        = anytrue([for step in var.steps : step.gpus == 0])
  lambda_zip_dir = coalesce(var.lambda_zip_dir, "${path.module}/../build")

  # Where `make model` (tools/model.py) uploads detection models; workers read them from here (MODELS_URI).
  models_prefix = "models/"

  subnet_ids         = var.network.create_vpc ? module.network[0].worker_subnet_ids : var.network.subnet_ids
  security_group_ids = var.network.create_vpc ? [module.network[0].worker_security_group_id] : var.network.security_group_ids
  public_ip          = var.network.create_vpc ? module.network[0].workers_need_public_ip : var.network.public_ip

  notifications                 = var.notifications || length(var.notification_emails) > 0
  steps_a_warm_pool_cannot_keep = [for step in var.steps : step.name if step.spot || length(step.instance_types) > 1]

  gpu_ami_id = var.gpu_ami_id != null ? var.gpu_ami_id : try(nonsensitive(data.aws_ssm_parameter.gpu_ami[0].value), "")
  cpu_ami_id = var.cpu_ami_id != null ? var.cpu_ami_id : try(nonsensitive(data.aws_ssm_parameter.cpu_ami[0].value), "")

  # The pipeline definition both Lambdas and the local runtime read (pipeline_core/pipeline.py), built once
  # from two sets of references: the resources' own (queue URLs and ARNs are known only after apply), and
  # the same names as AWS will spell them, known at plan time, so that the Lambdas' 4 KB environment limit
  # is checked on the first plan too (modules/lambdas).
  step_references = [
    { for step in var.steps : step.name => {
      queue_url = module.step[step.name].queue_url
      dlq_url   = module.step[step.name].dlq_url
      dlq_arn   = module.step[step.name].dlq_arn
    } },
    { for step in var.steps : step.name => {
      queue_url = "https://sqs.${data.aws_region.current.name}.amazonaws.com/${data.aws_caller_identity.current.account_id}/${module.step[step.name].queue_name}"
      dlq_url   = "https://sqs.${data.aws_region.current.name}.amazonaws.com/${data.aws_caller_identity.current.account_id}/${module.step[step.name].dlq_name}"
      dlq_arn   = "arn:${data.aws_partition.current.partition}:sqs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:${module.step[step.name].dlq_name}"
    } },
  ]
  pipeline_configs = [for references in local.step_references : {
    steps = [for step in var.steps : {
      name                      = step.name
      queue_url                 = references[step.name].queue_url
      service                   = module.service[step.name].service_name
      target_backlog_per_task   = step.target_backlog_per_task
      scaling_table             = step.scaling_table
      scale_in_cooldown_seconds = step.scale_in_cooldown_seconds
      min_tasks                 = step.min_tasks
      max_tasks                 = step.max_tasks
      idle_seconds              = step.idle_seconds
      # The dead-letter consumer finds a message's step by its DLQ and reports the receives it had.
      dlq_url           = references[step.name].dlq_url
      dlq_arn           = references[step.name].dlq_arn
      max_receive_count = step.max_receive_count
    }]
    jobs_table          = module.storage.jobs_table_name
    cluster             = aws_ecs_cluster.this.name
    scaler_state_table  = module.storage.scaler_state_table_name
    input_prefix        = var.input_prefix
    allowed_suffixes    = [for suffix in var.allowed_suffixes : lower(suffix)]
    task_protection_api = var.create_capacity
  }]
  pipeline_config = local.pipeline_configs[0]
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

################################################################################
# Network
################################################################################

module "network" {
  source = "./modules/network"
  count  = var.network.create_vpc ? 1 : 0

  name               = var.name
  cidr               = var.network.cidr
  az_count           = var.network.az_count
  availability_zones = var.network.availability_zones
  nat_gateway        = var.network.nat_gateway
  tags               = var.tags
}

################################################################################
# Storage: media bucket, intake queue, jobs table
################################################################################

module "storage" {
  source = "./modules/storage"

  name           = var.name
  bucket_name    = var.bucket_name
  force_destroy  = var.force_destroy
  tls_only       = var.bucket_tls_only
  input_prefix   = var.input_prefix
  results_prefix = var.results_prefix
  kms_key_arn    = var.kms_key_arn
  tags           = var.tags

  intake_visibility_timeout = module.lambdas.event_source_visibility_timeout
}

################################################################################
# Worker image repository
################################################################################

resource "aws_ecr_repository" "this" {
  name                 = "${var.name}-worker"
  image_tag_mutability = "IMMUTABLE"
  force_delete         = var.force_destroy

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = var.kms_key_arn == null ? "AES256" : "KMS"
    kms_key         = var.kms_key_arn
  }

  tags = var.tags
}

resource "aws_ecr_lifecycle_policy" "this" {
  repository = aws_ecr_repository.this.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the 20 most recent images"
      selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = 20 }
      action       = { type = "expire" }
    }]
  })
}

################################################################################
# Cluster and steps
################################################################################

data "aws_ssm_parameter" "gpu_ami" {
  count = var.create_capacity && local.any_gpu && var.gpu_ami_id == null ? 1 : 0
  name  = var.gpu_ami_ssm_parameter
}

data "aws_ssm_parameter" "cpu_ami" {
  count = var.create_capacity && local.any_cpu && var.cpu_ami_id == null ? 1 : 0
  name  = "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"
}

resource "aws_ecs_cluster" "this" {
  name = var.name

  lifecycle {
    # awsvpc tasks on EC2 get no public IP: in the module's VPC they reach SQS and ECS only through NAT.
    precondition {
      condition     = var.task_network_mode != "awsvpc" || !var.network.create_vpc || var.network.nat_gateway
      error_message = "task_network_mode = \"awsvpc\" needs network.nat_gateway = true (awsvpc tasks on EC2 have no public IP and cannot reach SQS from public subnets); use bridge otherwise."
    }

    # EC2 Auto Scaling warm pools do not support mixed instances policies: a group with a warm pool runs one
    # On-Demand instance type. Refused rather than silently dropping Spot and the other types.
    precondition {
      condition     = !var.warm_pool.enabled || length(local.steps_a_warm_pool_cannot_keep) == 0
      error_message = "warm_pool.enabled needs every step On-Demand with one instance type (warm pools do not support mixed instances policies); steps ${join(", ", local.steps_a_warm_pool_cannot_keep)} set spot = true or several instance_types."
    }
  }

  setting {
    name  = "containerInsights"
    value = var.container_insights ? "enabled" : "disabled"
  }

  tags = var.tags
}

module "step" {
  source   = "./modules/step"
  for_each = local.steps

  name                = var.name
  step                = each.value
  ami_id              = each.value.gpus > 0 ? local.gpu_ami_id : local.cpu_ami_id
  cluster_name        = aws_ecs_cluster.this.name
  cluster_arn         = aws_ecs_cluster.this.arn
  create_capacity     = var.create_capacity
  subnet_ids          = local.subnet_ids
  security_group_ids  = local.security_group_ids
  associate_public_ip = local.public_ip
  task_network_mode   = var.task_network_mode
  bucket_name         = module.storage.bucket_name
  bucket_arn          = module.storage.bucket_arn
  input_prefix        = var.input_prefix
  results_prefix      = var.results_prefix
  models_prefix       = local.models_prefix
  jobs_table_name     = module.storage.jobs_table_name
  jobs_table_arn      = module.storage.jobs_table_arn
  ecr_repository_arn  = aws_ecr_repository.this.arn
  log_retention_days  = var.log_retention_days
  kms_key_arn         = var.kms_key_arn
  warm_pool           = var.warm_pool
  force_delete        = var.force_destroy
  tags                = var.tags

  dlq_visibility_timeout = module.lambdas.event_source_visibility_timeout
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  count = var.create_capacity ? 1 : 0

  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = [for step in var.steps : module.step[step.name].capacity_provider_name]
}

# Services are their own module: each waits for the cluster's capacity provider association,
# which needs every step's capacity provider first.
module "service" {
  source   = "./modules/service"
  for_each = local.steps

  name                       = "${var.name}-${each.key}"
  cluster_arn                = aws_ecs_cluster.this.arn
  task_definition_arn        = module.step[each.key].task_definition_arn
  capacity_provider_name     = module.step[each.key].capacity_provider_name
  cluster_capacity_providers = try(aws_ecs_cluster_capacity_providers.this[0].capacity_providers, [])
  network_mode               = var.task_network_mode
  subnet_ids                 = local.subnet_ids
  security_group_ids         = local.security_group_ids
  tags                       = var.tags
}

################################################################################
# Lambdas: intake, router, dead-letter consumer, scaler
################################################################################

resource "aws_sns_topic" "jobs" {
  count = local.notifications ? 1 : 0

  name              = "${var.name}-jobs"
  kms_master_key_id = coalesce(var.kms_key_arn, "alias/aws/sns")

  tags = var.tags
}

resource "aws_sns_topic_subscription" "jobs" {
  for_each = toset(var.notification_emails)

  topic_arn = aws_sns_topic.jobs[0].arn
  protocol  = "email"
  endpoint  = each.value
}

module "lambdas" {
  source = "./modules/lambdas"

  name                   = var.name
  lambda_zip_dir         = local.lambda_zip_dir
  pipeline_config        = local.pipeline_config
  pipeline_config_sizing = local.pipeline_configs[1]
  jobs_table_arn         = module.storage.jobs_table_arn
  jobs_table_stream_arn  = module.storage.jobs_table_stream_arn
  scaler_state_table_arn = module.storage.scaler_state_table_arn
  intake_queue_arn       = module.storage.intake_queue_arn

  intake_queue_visibility_timeout = module.storage.intake_queue_visibility_timeout
  step_queue_arns                 = [for step in var.steps : module.step[step.name].queue_arn]
  step_dlq_arns                   = { for step in var.steps : step.name => module.step[step.name].dlq_arn }
  cluster_name                    = aws_ecs_cluster.this.name
  service_arns                    = [for step in var.steps : module.service[step.name].service_arn]
  notify_topic_arn                = try(aws_sns_topic.jobs[0].arn, null)
  create_triggers                 = var.create_lambda_triggers
  scaler_schedule                 = var.scaler_schedule
  log_retention_days              = var.log_retention_days

  scaler_reserved_concurrency = var.scaler_reserved_concurrency
  kms_key_arn                 = var.kms_key_arn
  tags                        = var.tags
}

################################################################################
# Observability: alarms and dashboard
################################################################################

module "observability" {
  source = "./modules/observability"

  name = var.name
  steps = [for step in var.steps : {
    name                   = step.name
    queue_name             = module.step[step.name].queue_name
    dlq_name               = module.step[step.name].dlq_name
    service_name           = module.service[step.name].service_name
    autoscaling_group_name = module.step[step.name].autoscaling_group_name
    start_failure_metric   = module.step[step.name].start_failure_metric
  }]
  dead_letter_queue_names = {
    intake          = module.storage.intake_dlq_name
    router-failures = module.lambdas.router_failures_queue_name
  }
  function_names             = module.lambdas.function_names
  oldest_message_age_seconds = var.oldest_message_age_seconds
  alarm_actions              = concat(var.alarm_actions, aws_sns_topic.alarms[*].arn)
  tags                       = var.tags
}

# alarm_emails: a topic of the module's own that every alarm notifies, each address subscribed (AWS mails a
# confirmation link first; nothing arrives until it is clicked). CloudWatch publishes alarm actions as the service
# principal, and the AWS managed key alias/aws/sns does not let it use the key (its policy cannot be changed), so a
# topic encrypted with it drops every alarm. With kms_key_arn the topic uses that key, whose policy lets CloudWatch
# use it for this pipeline's alarms (modules/kms_key_policy); without one it is left unencrypted: alarm messages
# carry alarm and metric names, states and thresholds, no user data.
resource "aws_sns_topic" "alarms" {
  # checkov:skip=CKV_AWS_26:Without kms_key_arn the alarms topic is unencrypted on purpose: CloudWatch cannot publish to a topic under the AWS managed key alias/aws/sns, and alarms hold no user data. With kms_key_arn it is encrypted with that key.
  count = length(var.alarm_emails) > 0 ? 1 : 0

  name              = "${var.name}-alarms"
  kms_master_key_id = var.kms_key_arn

  tags = var.tags
}

resource "aws_sns_topic_subscription" "alarms" {
  for_each = toset(var.alarm_emails)

  topic_arn = aws_sns_topic.alarms[0].arn
  protocol  = "email"
  endpoint  = each.value
}

################################################################################
# Plan-time warnings: GPUs that no model uses
################################################################################

locals {
  # Detectors with no GPU code path (worker/detection/detectors.py: device = "CPU"), and the detectors
  # a detect step runs when its options name none (worker/detection/engine.py: DEFAULT_DETECTORS).
  cpu_only_detectors = ["people-hog"]
  default_detectors  = ["people-ssdlite", "faces-mtcnn"]

  step_detectors = {
    for step in var.steps : step.name => [for detector in try(jsondecode(step.processor_options).detectors, []) : try(detector.name, "")]
  }
  gpu_steps_running_cpu_only_detectors = [
    for step in var.steps : step.name
    if step.gpus > 0 && step.processor == "detect" && alltrue([
      for name in(length(local.step_detectors[step.name]) > 0 ? local.step_detectors[step.name] : local.default_detectors) :
      contains(local.cpu_only_detectors, name)
    ])
  ]
}

check "gpu_steps_run_gpu_models" {
  assert {
    condition     = length(local.gpu_steps_running_cpu_only_detectors) == 0
    error_message = "Steps ${join(", ", local.gpu_steps_running_cpu_only_detectors)} ask for GPUs but run only CPU-only detectors (${join(", ", local.cpu_only_detectors)}): they pay for a GPU they never use. Give them gpus = 0 and CPU instance types (c6i, c7i), or a GPU model (people-ssdlite, faces-mtcnn, tf-savedmodel)."
  }
}

check "models_prefix_apart_from_uploads" {
  assert {
    condition     = !startswith(local.models_prefix, var.input_prefix) && !startswith(var.input_prefix, local.models_prefix)
    error_message = "input_prefix ${var.input_prefix} overlaps the models prefix ${local.models_prefix}: uploading a model would start jobs on its files."
  }
}
