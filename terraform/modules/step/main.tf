data "aws_region" "current" {}
data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

# The provider's default_tags reach resources' own tags, not a launch template's tag_specifications nor an Auto
# Scaling group's propagated tags: read here so that the instances, their volumes and network interfaces (what
# costs, warm pool instances included) carry them for cost allocation.
data "aws_default_tags" "this" {}

locals {
  name       = "${var.name}-${var.step.name}"
  arn_prefix = "arn:${data.aws_partition.current.partition}"
  region     = data.aws_region.current.name
  account    = data.aws_caller_identity.current.account_id

  # What the worker reads (worker/config.py), one place: the task definition.
  worker_environment = merge(
    {
      QUEUE_URL            = aws_sqs_queue.this.id
      JOBS_TABLE           = var.jobs_table_name
      STEP_NAME            = var.step.name
      RESULTS_BUCKET       = var.bucket_name
      RESULTS_PREFIX       = var.results_prefix
      MODELS_URI           = "s3://${var.bucket_name}/${var.models_prefix}"
      PROCESSOR            = var.step.processor
      PROCESSOR_OPTIONS    = var.step.processor_options
      VISIBILITY_TIMEOUT   = tostring(var.step.visibility_timeout)
      CONCURRENCY          = tostring(var.step.concurrency)
      MAX_ATTEMPTS         = tostring(var.step.max_attempts)
      STEP_TIMEOUT_SECONDS = tostring(var.step.timeout_seconds)
      GRACE_SECONDS        = tostring(var.step.grace_seconds)
      SEGMENT_SECONDS      = tostring(var.step.segment_seconds)
      SEGMENTS_IN_FLIGHT   = tostring(var.step.segments_in_flight)
      ANNOTATE             = tostring(var.step.annotate)
      # A worker that cannot start (no model yet, a broken setting) waits this long before it exits, so ECS
      # does not restart it in a tight loop on a paid GPU instance (worker/main.py).
      STARTUP_BACKOFF_SECONDS = tostring(local.startup_backoff_seconds)
      # Only agents >= 1.104 inject AWS_REGION, and the IMDS hop limit keeps the SDK from asking the instance.
      AWS_REGION              = local.region
      AWS_DEFAULT_REGION      = local.region
      HOME                    = "/tmp"
      PYTHONDONTWRITEBYTECODE = "1"
      PYTHONUNBUFFERED        = "1"
    },
    var.step.environment,
  )

  startup_backoff_seconds = 300
  # Lines the worker logs when it cannot start, counted by the metric filter below; observability alarms on it.
  start_failure_metric = { namespace = "GpuPipeline", name = "WorkerCannotStart-${local.name}" }
  # From launch to a task running: boot, the ECS agent registering, the image pull (skipped with the AMI from
  # ami/), the model download. Capacity provider managed scaling counts a new instance only after this.
  instance_warmup_period = 300

  launched_tags = merge(data.aws_default_tags.this.tags, var.tags, { Name = local.name })

  container = merge(
    {
      name                   = "worker"
      image                  = var.step.image
      essential              = true
      cpu                    = var.step.cpu
      memory                 = var.step.memory
      stopTimeout            = var.step.stop_timeout
      readonlyRootFilesystem = true
      environment            = [for key in sort(keys(local.worker_environment)) : { name = key, value = local.worker_environment[key] }]
      mountPoints            = [{ sourceVolume = "scratch", containerPath = "/tmp", readOnly = false }]
      linuxParameters        = { initProcessEnabled = true }
      # ECS ignores the image's HEALTHCHECK; an unhealthy essential container gets its task replaced. The worker
      # touches its health file on every loop and heartbeat (worker/health.py); startPeriod covers the model load.
      healthCheck = {
        command     = ["CMD", "python", "-m", "worker.health"]
        interval    = 30
        timeout     = 5
        retries     = 3
        startPeriod = 300
      }
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.this.name
          awslogs-region        = data.aws_region.current.name
          awslogs-stream-prefix = var.step.name
        }
      }
    },
    var.step.gpus > 0 ? { resourceRequirements = [{ type = "GPU", value = tostring(var.step.gpus) }] } : {},
    length(var.step.command) > 0 ? { command = var.step.command } : {},
  )
}

################################################################################
# Queue and dead-letter queue
################################################################################

resource "aws_sqs_queue" "dlq" {
  name                      = "${local.name}-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = var.kms_key_arn == null ? true : null
  kms_master_key_id         = var.kms_key_arn

  # The dead-letter consumer reads this queue: six times its timeout plus its batching window (modules/lambdas).
  visibility_timeout_seconds = var.dlq_visibility_timeout

  tags = var.tags
}

resource "aws_sqs_queue" "this" {
  name                       = local.name
  visibility_timeout_seconds = var.step.visibility_timeout
  receive_wait_time_seconds  = 20
  message_retention_seconds  = 1209600
  sqs_managed_sse_enabled    = var.kms_key_arn == null ? true : null
  kms_master_key_id          = var.kms_key_arn

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.step.max_receive_count
  })

  tags = var.tags
}

################################################################################
# Logs
################################################################################

resource "aws_cloudwatch_log_group" "this" {
  # checkov:skip=CKV_AWS_158:Encrypted with CloudWatch Logs' own keys unless kms_key_arn is given; checkov cannot see the variable.
  # checkov:skip=CKV_AWS_338:Retention is the log_retention_days input (default 30 days): a year of worker logs is the user's choice, not a default.
  name              = "/${var.name}/steps/${var.step.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn

  tags = var.tags
}

resource "aws_cloudwatch_log_metric_filter" "cannot_start" {
  name           = "${local.name}-cannot-start"
  log_group_name = aws_cloudwatch_log_group.this.name
  pattern        = "{ $.event = \"cannot start\" }"

  metric_transformation {
    namespace     = local.start_failure_metric.namespace
    name          = local.start_failure_metric.name
    value         = "1"
    default_value = "0"
  }
}

################################################################################
# IAM: task role (what the worker may touch), execution role, instance role
################################################################################

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    # Confused deputy: only ECS acting for this account may take the role.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["${local.arn_prefix}:ecs:${local.region}:${local.account}:*"]
    }
  }
}

resource "aws_iam_role" "task" {
  name               = "${local.name}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json

  tags = var.tags
}

data "aws_iam_policy_document" "task" {
  statement {
    # SendMessage: retries, postponements and hand-backs are requeued as fresh copies (worker/runtime.py), and a
    # split video sends one message per segment with SendMessageBatch (worker/splitter.py).
    sid       = "OwnQueue"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes", "sqs:SendMessage"]
    resources = [aws_sqs_queue.this.arn]
  }

  statement {
    sid       = "JobItems"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchGetItem"]
    resources = [var.jobs_table_arn]
  }

  statement {
    sid       = "ReadInputsAndEarlierResults"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${var.bucket_arn}/${var.input_prefix}*", "${var.bucket_arn}/${var.results_prefix}*"]
  }

  # Detection models `make model` uploaded under models/: read once at start-up, listed to find their files.
  statement {
    sid       = "ReadModels"
    actions   = ["s3:GetObject"]
    resources = ["${var.bucket_arn}/${var.models_prefix}*"]
  }

  statement {
    sid       = "ListModels"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.models_prefix}*"]
    }
  }

  statement {
    sid       = "WriteResults"
    actions   = ["s3:PutObject"]
    resources = ["${var.bucket_arn}/${var.results_prefix}*"]
  }

  # Without ListBucket, S3 answers a missing key with 403 instead of 404, and the worker cannot tell a
  # deleted input (permanent) from a denied one. S3 checks it without an s3:prefix, so no prefix condition.
  statement {
    sid       = "TellMissingFromDenied"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]
  }

  # The ECS agent calls these with the task role's credentials when the worker asks it for
  # scale-in protection (amazon-ecs-agent, task protection handler).
  statement {
    sid       = "OwnTaskProtection"
    actions   = ["ecs:UpdateTaskProtection", "ecs:GetTaskProtection"]
    resources = ["${local.arn_prefix}:ecs:${local.region}:${local.account}:task/${var.cluster_name}/*"]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [var.cluster_arn]
    }
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]

    content {
      # Its queue, the bucket and the key-encrypted jobs table (DynamoDB calls KMS with this role).
      sid       = "EncryptionKey"
      actions   = ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "worker"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

resource "aws_iam_role" "execution" {
  name               = "${local.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json

  tags = var.tags
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this.arn}:*"]
  }

  dynamic "statement" {
    for_each = var.ecr_repository_arn == null ? [] : [var.ecr_repository_arn]

    content {
      sid       = "PullWorkerImage"
      actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    for_each = var.ecr_repository_arn == null ? [] : [var.ecr_repository_arn]

    content {
      # GetAuthorizationToken has no resource-level permissions: AWS requires "*".
      sid       = "EcrLogin"
      actions   = ["ecr:GetAuthorizationToken"]
      resources = ["*"]
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "pull-and-log"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# EC2 passes no aws:SourceArn or aws:SourceAccount when it assumes an instance role: a confused-deputy
# condition here would stop instances from getting credentials. iam:PassRole guards this role instead.
data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "instance" {
  count = var.create_capacity ? 1 : 0

  name               = "${local.name}-instance"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json

  tags = var.tags
}

# AWS-managed policies for the ECS agent and SSM Session Manager (the only way in: no SSH anywhere).
resource "aws_iam_role_policy_attachment" "instance" {
  for_each = var.create_capacity ? toset([
    "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role",
    "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore",
  ]) : toset([])

  role       = aws_iam_role.instance[0].name
  policy_arn = each.value
}

resource "aws_iam_instance_profile" "this" {
  count = var.create_capacity ? 1 : 0

  name = "${local.name}-instance"
  role = aws_iam_role.instance[0].name

  tags = var.tags
}

################################################################################
# Task definition
################################################################################

resource "aws_ecs_task_definition" "this" {
  family                   = local.name
  requires_compatibilities = ["EC2"]
  network_mode             = var.task_network_mode
  task_role_arn            = aws_iam_role.task.arn
  execution_role_arn       = aws_iam_role.execution.arn
  container_definitions    = jsonencode([local.container])

  volume {
    name = "scratch"
  }

  tags = var.tags
}

################################################################################
# Instances: launch template, Auto Scaling group from zero, capacity provider
################################################################################

resource "aws_launch_template" "this" {
  count = var.create_capacity ? 1 : 0

  name_prefix            = "${local.name}-"
  image_id               = var.ami_id
  instance_type          = var.step.instance_types[0]
  update_default_version = true
  ebs_optimized          = true

  iam_instance_profile {
    arn = aws_iam_instance_profile.this[0].arn
  }

  # IMDSv2 only; hop limit 1 keeps bridge-mode containers off the instance role.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  block_device_mappings {
    device_name = "/dev/xvda"

    ebs {
      volume_size           = var.step.root_volume_gib
      volume_type           = "gp3"
      encrypted             = true
      kms_key_id            = var.kms_key_arn
      delete_on_termination = true
    }
  }

  network_interfaces {
    associate_public_ip_address = var.associate_public_ip
    security_groups             = var.security_group_ids
    delete_on_termination       = true
  }

  monitoring {
    enabled = true
  }

  user_data = base64encode(templatefile("${path.module}/user_data.sh.tftpl", {
    cluster_name = var.cluster_name
    gpu_support  = var.step.gpus > 0
    stop_timeout = var.step.stop_timeout
    warm_pool    = var.warm_pool.enabled
  }))

  dynamic "tag_specifications" {
    for_each = ["instance", "volume", "network-interface"]

    content {
      resource_type = tag_specifications.value
      tags          = local.launched_tags
    }
  }

  tags = var.tags
}

resource "aws_autoscaling_group" "this" {
  count = var.create_capacity ? 1 : 0

  # A prefix, not a name: a replaced group gets a new name, and so does its capacity provider (named after it),
  # which create_before_destroy creates before the old one is gone.
  name_prefix           = "${local.name}-"
  min_size              = 0
  max_size              = var.step.max_tasks
  vpc_zone_identifier   = var.subnet_ids
  protect_from_scale_in = true # required by managed termination protection: ECS decides which instances go
  capacity_rebalance    = var.step.spot
  health_check_type     = "EC2"
  # terraform destroy: scale-in-protected instances (tasks on them) block the group's deletion unless forced.
  force_delete = var.force_delete

  # Warm pools do not support mixed instances policies: one instance type then.
  dynamic "launch_template" {
    for_each = var.warm_pool.enabled ? [1] : []

    content {
      id      = aws_launch_template.this[0].id
      version = aws_launch_template.this[0].latest_version
    }
  }

  dynamic "mixed_instances_policy" {
    for_each = var.warm_pool.enabled ? [] : [1]

    content {
      instances_distribution {
        on_demand_base_capacity                  = 0
        on_demand_percentage_above_base_capacity = var.step.spot ? 0 : 100
        spot_allocation_strategy                 = "price-capacity-optimized"
      }

      launch_template {
        launch_template_specification {
          launch_template_id = aws_launch_template.this[0].id
          version            = aws_launch_template.this[0].latest_version
        }

        dynamic "override" {
          for_each = var.step.instance_types

          content {
            instance_type = override.value
          }
        }
      }
    }
  }

  dynamic "warm_pool" {
    for_each = var.warm_pool.enabled ? [var.warm_pool] : []

    content {
      pool_state = "Stopped"
      min_size   = warm_pool.value.min_size
      # Pool size = max(min_size, this - desired): exactly min_size stopped instances at any desired count.
      # No instance_reuse_policy: ECS does not support reuse on scale-in for capacity-provider groups.
      max_group_prepared_capacity = warm_pool.value.min_size
    }
  }

  # The dashboard's instance widget reads these group metrics (published only when enabled, at no charge).
  enabled_metrics = [
    "GroupDesiredCapacity",
    "GroupInServiceInstances",
    "GroupPendingInstances",
    "GroupTerminatingInstances",
    "GroupTotalInstances",
    "WarmPoolWarmedCapacity",
  ]

  # A new launch template version (a new AMI) replaces running and warm pool instances; instances
  # protected by ECS (tasks on them) are waited for, never cut from under a task.
  instance_refresh {
    strategy = "Rolling"

    preferences {
      min_healthy_percentage       = 100
      max_healthy_percentage       = 200
      scale_in_protected_instances = "Wait"
      standby_instances            = "Terminate"
      skip_matching                = true
    }
  }

  tag {
    key                 = "AmazonECSManaged"
    value               = "true"
    propagate_at_launch = true
  }

  dynamic "tag" {
    for_each = { for key, value in local.launched_tags : key => value if key != "Name" }

    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  lifecycle {
    ignore_changes = [desired_capacity]
  }
}

resource "aws_ecs_capacity_provider" "this" {
  count = var.create_capacity ? 1 : 0

  name = aws_autoscaling_group.this[0].name

  auto_scaling_group_provider {
    auto_scaling_group_arn         = aws_autoscaling_group.this[0].arn
    managed_termination_protection = "ENABLED"
    managed_draining               = "ENABLED"

    managed_scaling {
      status                    = "ENABLED"
      target_capacity           = 100
      minimum_scaling_step_size = 1
      maximum_scaling_step_size = var.step.max_tasks
      instance_warmup_period    = local.instance_warmup_period
    }
  }

  tags = var.tags

  lifecycle {
    # When a step is removed, Terraform then updates the cluster's capacity provider association
    # before deleting this provider; by default it deletes first and ECS waits 20 minutes for a
    # provider still in use (terraform-provider-aws issue 29152). See terraform/README.md.
    create_before_destroy = true
  }
}
