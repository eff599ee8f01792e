# The step module alone: queue, task definition, launch template and group, with their secure defaults.

mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  name               = "unit"
  ami_id             = "ami-0123456789abcdef0"
  cluster_name       = "unit"
  cluster_arn        = "arn:aws:ecs:eu-west-1:123456789012:cluster/unit"
  subnet_ids         = ["subnet-1", "subnet-2"]
  security_group_ids = ["sg-1"]
  bucket_name        = "media"
  bucket_arn         = "arn:aws:s3:::media"
  input_prefix       = "uploads/"
  results_prefix     = "results/"
  jobs_table_name    = "unit-jobs"
  jobs_table_arn     = "arn:aws:dynamodb:eu-west-1:123456789012:table/unit-jobs"
  ecr_repository_arn = "arn:aws:ecr:eu-west-1:123456789012:repository/unit-worker"

  dlq_visibility_timeout = 360
  step = {
    name              = "people"
    image             = "w:1"
    gpus              = 1
    instance_types    = ["g4dn.xlarge", "g5.xlarge"]
    max_tasks         = 3
    max_receive_count = 4
  }
}

run "gpu_step_defaults" {
  module {
    source = "./modules/step"
  }

  command = apply

  assert {
    condition     = jsondecode(aws_sqs_queue.this.redrive_policy).maxReceiveCount == 4 && aws_sqs_queue.this.receive_wait_time_seconds == 20
    error_message = "the queue redrives to its DLQ after max_receive_count and long-polls"
  }

  assert {
    condition     = aws_sqs_queue.this.sqs_managed_sse_enabled && aws_sqs_queue.dlq.sqs_managed_sse_enabled
    error_message = "queues are encrypted"
  }

  assert {
    condition     = jsondecode(aws_ecs_task_definition.this.container_definitions)[0].resourceRequirements[0].type == "GPU"
    error_message = "a GPU step reserves its GPU"
  }

  assert {
    condition     = jsondecode(aws_ecs_task_definition.this.container_definitions)[0].stopTimeout == 120 && jsondecode(aws_ecs_task_definition.this.container_definitions)[0].readonlyRootFilesystem
    error_message = "the container drains on stop and has a read-only root"
  }

  assert {
    condition     = aws_launch_template.this[0].metadata_options[0].http_tokens == "required" && aws_launch_template.this[0].metadata_options[0].http_put_response_hop_limit == 1
    error_message = "IMDSv2 only, and containers cannot reach the instance role"
  }

  assert {
    condition     = aws_launch_template.this[0].block_device_mappings[0].ebs[0].encrypted == "true"
    error_message = "root volumes are encrypted"
  }

  assert {
    condition     = strcontains(base64decode(aws_launch_template.this[0].user_data), "ECS_ENABLE_GPU_SUPPORT=true") && strcontains(base64decode(aws_launch_template.this[0].user_data), "ECS_IMAGE_PULL_BEHAVIOR=prefer-cached")
    error_message = "instances join the cluster with GPU support and cached pulls"
  }

  assert {
    condition     = aws_autoscaling_group.this[0].min_size == 0 && aws_autoscaling_group.this[0].max_size == 3 && aws_autoscaling_group.this[0].protect_from_scale_in
    error_message = "the group scales from zero, and ECS decides which instances go"
  }

  assert {
    condition     = length(aws_autoscaling_group.this[0].mixed_instances_policy[0].launch_template[0].override) == 2
    error_message = "every listed instance type is allowed"
  }

  assert {
    condition     = aws_ecs_capacity_provider.this[0].auto_scaling_group_provider[0].managed_termination_protection == "ENABLED"
    error_message = "instances running tasks are never terminated by scale-in"
  }
}

run "warm_pool_uses_one_instance_type" {
  module {
    source = "./modules/step"
  }

  command = apply

  variables {
    warm_pool = { enabled = true, min_size = 1 }
  }

  assert {
    condition     = length(aws_autoscaling_group.this[0].warm_pool) == 1 && length(aws_autoscaling_group.this[0].mixed_instances_policy) == 0
    error_message = "a warm pool replaces the mixed instances policy"
  }

  assert {
    condition     = strcontains(base64decode(aws_launch_template.this[0].user_data), "ECS_WARM_POOLS_CHECK=true")
    error_message = "the ECS agent waits until an instance leaves the warm pool"
  }

  assert {
    condition     = aws_autoscaling_group.this[0].warm_pool[0].max_group_prepared_capacity == 1 && length(aws_autoscaling_group.this[0].warm_pool[0].instance_reuse_policy) == 0
    error_message = "the pool holds min_size stopped instances, and no reuse on scale-in (not allowed for ECS capacity providers)"
  }

  assert {
    condition     = length(aws_autoscaling_group.this[0].instance_refresh) == 1 && contains(aws_autoscaling_group.this[0].enabled_metrics, "GroupInServiceInstances")
    error_message = "a new AMI refreshes warm and running instances; the dashboard's group metrics are enabled"
  }

  assert {
    condition     = local.worker_environment.AWS_REGION == "eu-west-1" && local.worker_environment.AWS_DEFAULT_REGION == "eu-west-1"
    error_message = "the task definition sets the region; the worker does not depend on the agent injecting it"
  }
}

# Cost allocation by tag must reach the GPUs: the provider's default_tags stop at resources' own tags and do not
# fill a launch template's tag_specifications, so instances (warm pool ones too: they launch from the same
# template), their volumes and network interfaces carry only what the template names.
run "default_tags_and_tags_reach_instances_volumes_and_interfaces" {
  module {
    source = "./modules/step"
  }

  command = plan

  override_data {
    target = data.aws_default_tags.this
    values = { tags = { CostCenter = "ml-platform" } }
  }

  variables {
    tags      = { Team = "vision" }
    warm_pool = { enabled = true, min_size = 1 }
    step      = { name = "people", image = "w:1", instance_types = ["g4dn.xlarge"] }
  }

  assert {
    condition     = toset([for spec in aws_launch_template.this[0].tag_specifications : spec.resource_type]) == toset(["instance", "volume", "network-interface"])
    error_message = "the launch template tags instances, volumes and network interfaces"
  }

  assert {
    condition = alltrue([for spec in aws_launch_template.this[0].tag_specifications :
    spec.tags["CostCenter"] == "ml-platform" && spec.tags["Team"] == "vision" && spec.tags["Name"] == "unit-people"])
    error_message = "every tag specification carries the provider's default_tags, the module's tags and a Name"
  }

  assert {
    condition     = anytrue([for tag in aws_autoscaling_group.this[0].tag : tag.key == "CostCenter" && tag.value == "ml-platform" && tag.propagate_at_launch])
    error_message = "the group propagates the default tags to what it launches, warm pool instances included"
  }

  assert {
    condition     = length(aws_autoscaling_group.this[0].warm_pool) == 1 && aws_autoscaling_group.this[0].launch_template[0].id == aws_launch_template.this[0].id
    error_message = "warm pool instances launch from the tagged template"
  }
}
