################################################################################
# Queue and dead-letter queue
################################################################################

output "queue_url" {
  description = "URL of the step's queue"
  value       = aws_sqs_queue.this.id
}

output "queue_arn" {
  description = "ARN of the step's queue"
  value       = aws_sqs_queue.this.arn
}

output "queue_name" {
  description = "Name of the step's queue"
  value       = aws_sqs_queue.this.name
}

output "dlq_url" {
  description = "URL of the step's dead-letter queue"
  value       = aws_sqs_queue.dlq.id
}

output "dlq_arn" {
  description = "ARN of the step's dead-letter queue"
  value       = aws_sqs_queue.dlq.arn
}

output "dlq_name" {
  description = "Name of the step's dead-letter queue"
  value       = aws_sqs_queue.dlq.name
}

################################################################################
# Logs
################################################################################

output "log_group_name" {
  description = "Log group of the step's workers"
  value       = aws_cloudwatch_log_group.this.name
}

################################################################################
# IAM
################################################################################

output "task_role_arn" {
  description = "ARN of the worker's task role"
  value       = aws_iam_role.task.arn
}

output "execution_role_arn" {
  description = "ARN of the task execution role"
  value       = aws_iam_role.execution.arn
}

################################################################################
# Task definition
################################################################################

output "task_definition_arn" {
  description = "ARN of the worker task definition"
  value       = aws_ecs_task_definition.this.arn
}

output "worker_environment" {
  description = "Environment the worker container gets"
  value       = local.worker_environment
}

################################################################################
# Instances
################################################################################

output "autoscaling_group_name" {
  description = "Name of the step's Auto Scaling group (null without capacity)"
  value       = try(aws_autoscaling_group.this[0].name, null)
}

output "autoscaling_group_arn" {
  description = "ARN of the step's Auto Scaling group (null without capacity)"
  value       = try(aws_autoscaling_group.this[0].arn, null)
}

output "capacity_provider_name" {
  description = "Name of the step's ECS capacity provider (null without capacity)"
  value       = try(aws_ecs_capacity_provider.this[0].name, null)
}

output "launch_template_id" {
  description = "ID of the step's launch template (null without capacity)"
  value       = try(aws_launch_template.this[0].id, null)
}

output "instance_warmup_period" {
  description = "Seconds managed scaling waits before a new instance counts (boot, agent, image pull, model)"
  value       = local.instance_warmup_period
}

output "force_delete" {
  description = "Whether terraform destroy may delete the group with its instances"
  value       = var.force_delete
}

output "container_definitions" {
  description = "The task definition's container definitions (JSON)"
  value       = jsonencode([local.container])
}

output "start_failure_metric" {
  description = "CloudWatch metric (namespace, name) counting the worker's 'cannot start' lines"
  value       = local.start_failure_metric
}

output "dlq_visibility_timeout" {
  description = "Visibility timeout of the step's DLQ in seconds"
  value       = aws_sqs_queue.dlq.visibility_timeout_seconds
}
