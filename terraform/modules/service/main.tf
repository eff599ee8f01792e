################################################################################
# Service: the scaler owns its desired count
################################################################################

resource "aws_ecs_service" "this" {
  # checkov:skip=CKV_AWS_333:assign_public_ip is false in the only network_configuration this module writes; checkov cannot evaluate the dynamic block.
  name                               = var.name
  cluster                            = var.cluster_arn
  task_definition                    = var.task_definition_arn
  desired_count                      = 0
  launch_type                        = var.capacity_provider_name == null ? "EC2" : null
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100
  enable_ecs_managed_tags            = true
  propagate_tags                     = "SERVICE"

  dynamic "capacity_provider_strategy" {
    for_each = var.capacity_provider_name == null ? [] : [var.capacity_provider_name]

    content {
      # Taken from the cluster's association, so the service is created only once the cluster has it.
      capacity_provider = one([for provider in var.cluster_capacity_providers : provider if provider == capacity_provider_strategy.value])
      weight            = 1
      base              = 0
    }
  }

  dynamic "network_configuration" {
    for_each = var.network_mode == "awsvpc" ? [1] : []

    content {
      subnets          = var.subnet_ids
      security_groups  = var.security_group_ids
      assign_public_ip = false
    }
  }

  tags = var.tags

  lifecycle {
    ignore_changes = [desired_count]
  }
}
