data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  name = "${var.name}-${var.step.name}"

  # What the worker reads (worker/config.py), one place: the task definition.
  worker_environment = merge(
    {
      QUEUE_URL               = aws_sqs_queue.this.id
      JOBS_TABLE              = var.jobs_table_name
      STEP_NAME               = var.step.name
      RESULTS_BUCKET          = var.bucket_name
      RESULTS_PREFIX          = var.results_prefix
      PROCESSOR               = var.step.processor
      PROCESSOR_OPTIONS       = var.step.processor_options
      VISIBILITY_TIMEOUT      = tostring(var.step.visibility_timeout)
      MAX_ATTEMPTS            = tostring(var.step.max_attempts)
      STEP_TIMEOUT_SECONDS    = tostring(var.step.timeout_seconds)
      GRACE_SECONDS           = tostring(var.step.grace_seconds)
      SEGMENT_SECONDS         = tostring(var.step.segment_seconds)
      HOME                    = "/tmp"
      PYTHONDONTWRITEBYTECODE = "1"
      PYTHONUNBUFFERED        = "1"
    },
    var.step.environment,
  )

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
  }
}

resource "aws_iam_role" "task" {
  name               = "${local.name}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json

  tags = var.tags
}

data "aws_iam_policy_document" "task" {
  statement {
    sid       = "OwnQueue"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.this.arn]
  }

  statement {
    sid       = "JobItems"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
    resources = [var.jobs_table_arn]
  }

  statement {
    sid       = "ReadInputsAndEarlierResults"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${var.bucket_arn}/${var.input_prefix}*", "${var.bucket_arn}/${var.results_prefix}*"]
  }

  statement {
    sid       = "WriteResults"
    actions   = ["s3:PutObject"]
    resources = ["${var.bucket_arn}/${var.results_prefix}*"]
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]

    content {
      sid       = "EncryptionKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
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

  tag_specifications {
    resource_type = "instance"
    tags          = merge(var.tags, { Name = local.name })
  }

  tag_specifications {
    resource_type = "volume"
    tags          = merge(var.tags, { Name = local.name })
  }

  tags = var.tags
}

resource "aws_autoscaling_group" "this" {
  count = var.create_capacity ? 1 : 0

  name                  = local.name
  min_size              = 0
  max_size              = var.step.max_tasks
  vpc_zone_identifier   = var.subnet_ids
  protect_from_scale_in = true # required by managed termination protection: ECS decides which instances go
  capacity_rebalance    = var.step.spot
  health_check_type     = "EC2"

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
      pool_state                  = "Stopped"
      min_size                    = warm_pool.value.min_size
      max_group_prepared_capacity = var.step.max_tasks

      instance_reuse_policy {
        reuse_on_scale_in = true
      }
    }
  }

  tag {
    key                 = "AmazonECSManaged"
    value               = "true"
    propagate_at_launch = true
  }

  dynamic "tag" {
    for_each = var.tags

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

  name = local.name

  auto_scaling_group_provider {
    auto_scaling_group_arn         = aws_autoscaling_group.this[0].arn
    managed_termination_protection = "ENABLED"
    managed_draining               = "ENABLED"

    managed_scaling {
      status                    = "ENABLED"
      target_capacity           = 100
      minimum_scaling_step_size = 1
      maximum_scaling_step_size = var.step.max_tasks
      instance_warmup_period    = 60
    }
  }

  tags = var.tags
}
