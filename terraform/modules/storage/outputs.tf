################################################################################
# Media bucket
################################################################################

output "bucket_name" {
  description = "Name of the media bucket"
  value       = aws_s3_bucket.this.id
}

output "bucket_arn" {
  description = "ARN of the media bucket"
  value       = aws_s3_bucket.this.arn
}

################################################################################
# Intake queue
################################################################################

output "intake_queue_url" {
  description = "URL of the intake queue that S3 notifies"
  value       = aws_sqs_queue.intake.id
}

output "intake_queue_arn" {
  description = "ARN of the intake queue"
  value       = aws_sqs_queue.intake.arn
}

output "intake_queue_visibility_timeout" {
  description = "Visibility timeout of the intake queue in seconds"
  value       = aws_sqs_queue.intake.visibility_timeout_seconds
}

output "intake_dlq_url" {
  description = "URL of the intake dead-letter queue"
  value       = aws_sqs_queue.intake_dlq.id
}

output "intake_dlq_name" {
  description = "Name of the intake dead-letter queue"
  value       = aws_sqs_queue.intake_dlq.name
}

output "intake_dlq_arn" {
  description = "ARN of the intake dead-letter queue"
  value       = aws_sqs_queue.intake_dlq.arn
}

################################################################################
# Jobs table
################################################################################

output "jobs_table_name" {
  description = "Name of the jobs table"
  value       = aws_dynamodb_table.jobs.name
}

output "jobs_table_arn" {
  description = "ARN of the jobs table"
  value       = aws_dynamodb_table.jobs.arn
}

output "jobs_table_stream_arn" {
  description = "ARN of the jobs table's stream"
  value       = aws_dynamodb_table.jobs.stream_arn
}

################################################################################
# Scaler state
################################################################################

output "scaler_state_table_name" {
  description = "Name of the scaler state table"
  value       = aws_dynamodb_table.scaler_state.name
}

output "scaler_state_table_arn" {
  description = "ARN of the scaler state table"
  value       = aws_dynamodb_table.scaler_state.arn
}
