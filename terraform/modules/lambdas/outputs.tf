################################################################################
# Functions
################################################################################

output "function_names" {
  description = "Function names by role: intake, router, deadletter, scaler"
  value       = { for key, function in aws_lambda_function.this : key => function.function_name }
}

output "function_arns" {
  description = "Function ARNs by role: intake, router, deadletter, scaler"
  value       = { for key, function in aws_lambda_function.this : key => function.arn }
}

output "role_arns" {
  description = "Execution role ARNs by function role"
  value       = { for key, role in aws_iam_role.this : key => role.arn }
}

output "pipeline_config" {
  description = "The PIPELINE_CONFIG document the functions read"
  value       = local.pipeline_config
}

################################################################################
# Triggers
################################################################################

output "router_failures_queue_url" {
  description = "Queue that receives stream batches the router could not process"
  value       = aws_sqs_queue.router_failures.id
}

output "router_failures_queue_name" {
  description = "Name of that queue"
  value       = aws_sqs_queue.router_failures.name
}

output "router_failures_queue_arn" {
  description = "ARN of that queue"
  value       = aws_sqs_queue.router_failures.arn
}

output "scaler_rule_name" {
  description = "EventBridge rule of the scaler schedule (null without triggers)"
  value       = try(aws_cloudwatch_event_rule.scaler[0].name, null)
}

output "environment_sizes" {
  description = "Bytes of each function's environment (names and values; Lambda's limit is 4096)"
  value       = local.environment_sizes
}

output "function_timeout_seconds" {
  description = "Timeout of every function"
  value       = local.function_timeout_seconds
}

output "batching_window_seconds" {
  description = "Batching window of the SQS event source mappings (intake, step dead-letter queues)"
  value       = local.batching_window_seconds
}

output "event_source_visibility_timeout" {
  description = "The visibility timeout an SQS queue these functions read needs: 6 x the function timeout plus the batching window"
  value       = local.event_source_visibility_timeout
}
